"""`metalearn fewshot ...`: episodic N-way K-shot classification from the command line.

Each command's module is imported only when that command runs (`LazyGroup`), so `metalearn fewshot --help`
imports no torch; the short help lines below are checked against the commands' own by a test.
"""

from __future__ import annotations

import click

from metalearn.cli.lazy import LazyGroup

__all__ = ["COMMANDS", "fewshot"]

COMMANDS = {
    "data": (
        "metalearn_fewshot.cli.data:data",
        "Count each split of a few-shot dataset on disk: classes (before rotation) and images.",
    ),
    "train": (
        "metalearn_fewshot.cli.train:train",
        "Meta-train a few-shot learner on a dataset's training classes (resumable, torchrun-ready).",
    ),
    "evaluate": (
        "metalearn_fewshot.cli.evaluate:evaluate",
        "Accuracy of a trained run over test episodes, with its 95 % confidence interval.",
    ),
    "demo": (
        "metalearn_fewshot.cli.demo:demo",
        "On the embedded glyphs: ProtoNets, MAML and a pre-train-then-fine-tune baseline at equal compute.",
    ),
}
"""Command name -> ("module:attribute", short help)."""


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
def fewshot() -> None:
    """Episodic few-shot classification (Omniglot, mini-ImageNet, CIFAR-FS, embedded glyphs)."""
