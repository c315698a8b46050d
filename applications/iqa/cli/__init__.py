"""`metalearn iqa ...`: train, fine-tune, evaluate and apply NR-IQA quality priors from the command line.

Each command's module is imported only when that command runs (`LazyGroup`), so `metalearn iqa --help`
imports no torch; the short help lines below are checked against the commands' own by a test.
"""

from __future__ import annotations

import click

from metalearn.cli.lazy import LazyGroup

__all__ = ["COMMANDS", "iqa"]

COMMANDS = {
    "data": (
        "metalearn_iqa.cli.data:data",
        "Write the table a loader sees (path, score in [0,1], raw score, type, level, reference, set).",
    ),
    "train": (
        "metalearn_iqa.cli.training:train",
        "Meta-train a quality prior on distortion-specific tasks (or the plain-training baseline); print the "
        "passes.",
    ),
    "finetune": (
        "metalearn_iqa.cli.training:finetune",
        "Fine-tune a prior (or a QPT backbone with a fresh head, --init) with Adam on every image of a database.",
    ),
    "evaluate": (
        "metalearn_iqa.cli.scoring:evaluate",
        "SROCC, PLCC (raw and 4-parameter logistic), KRCC and RMSE of a model on a database.",
    ),
    "predict": (
        "metalearn_iqa.cli.scoring:predict",
        "Predict a quality score (higher = better, about 0..1) for each image or every image in a folder.",
    ),
    "lodo": (
        "metalearn_iqa.cli.protocols:lodo",
        "Leave-one-distortion-out (Table 2): a prior per held-out type, tested zero-shot on all its images.",
    ),
    "cross": (
        "metalearn_iqa.cli.protocols:cross",
        "Synthetic-to-authentic (Tables 3-4): prior, then fine-tune on 80% and test on 20%, over seeded splits.",
    ),
    "demo": (
        "metalearn_iqa.cli.protocols:demo",
        "On the embedded synthetic database: train a MetaIQA prior and the fair baseline, compare them.",
    ),
    "pretrain": (
        "metalearn_iqa.cli.pretraining:pretrain",
        "Pre-train a backbone without labels (QPT); write it, projection head dropped, for --init.",
    ),
}
"""Command name -> ("module:attribute", short help)."""


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
def iqa() -> None:
    """No-reference image quality assessment with meta-learned quality priors (MetaIQA)."""
