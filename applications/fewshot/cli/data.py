"""`metalearn fewshot data`: what a loader finds on disk, split by split."""

from __future__ import annotations

import click

from metalearn.cli.errors import friendly_errors
from metalearn_fewshot.cli.options import DATASETS


@click.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="glyphs", show_default=True)
@click.option("--root", type=click.Path(file_okay=False), help="The folder that holds the dataset.")
@friendly_errors
def data(dataset: str, root: str | None) -> None:
    """Count each split of a few-shot dataset on disk: classes (before rotation) and images."""
    from metalearn_fewshot.data.registry import split_counts

    for split, count in split_counts(dataset, root).items():
        click.echo(f"{split}: {count.classes} classes, {count.images} images")
