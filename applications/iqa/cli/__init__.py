"""`metalearn iqa ...`: train, fine-tune, evaluate and apply NR-IQA quality priors from the command line."""

from __future__ import annotations

import click

from metalearn_iqa.cli.data import data
from metalearn_iqa.cli.errors import CLIError, friendly_errors
from metalearn_iqa.cli.pretraining import pretrain
from metalearn_iqa.cli.protocols import cross, demo, lodo
from metalearn_iqa.cli.scoring import evaluate, predict
from metalearn_iqa.cli.training import finetune, train

__all__ = ["CLIError", "friendly_errors", "iqa"]


@click.group()
def iqa() -> None:
    """No-reference image quality assessment with meta-learned quality priors (MetaIQA)."""


# In the order the commands were first defined, which `metalearn iqa --help` lists alphabetically anyway.
for command in (data, train, finetune, evaluate, predict, lodo, cross, demo, pretrain):
    iqa.add_command(command)
