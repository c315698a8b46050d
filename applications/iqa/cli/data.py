"""`metalearn iqa data`: the table a loader sees, and a check that every image decodes."""

from __future__ import annotations

from pathlib import Path

import click

from metalearn_iqa.cli.datasets import check_images, load
from metalearn_iqa.cli.errors import CLIError, friendly_errors
from metalearn_iqa.cli.files import writable_file
from metalearn_iqa.cli.options import DATASET_OPTION, ROOT_OPTION
from metalearn_iqa.data.records import write_table


@click.command()
@DATASET_OPTION
@ROOT_OPTION
@click.option("--out", type=click.Path(), default=None, help="CSV file to write.")
@click.option(
    "--check",
    is_flag=True,
    help="Also decode every image, as training would, and fail naming the first that cannot be read.",
)
@friendly_errors
def data(dataset: str, root: str | None, out: str | None, check: bool) -> None:
    """Write the table a loader sees (path, score in [0,1], raw score, type, level, reference, set)."""
    if out is None and not check:
        raise CLIError("give --out FILE to write the table, --check to decode every image, or both")
    if out is not None:
        writable_file(Path(out), "--out")
    records = load(dataset, root)
    if check:
        check_images(records)
        click.echo(f"{len(records)} images from {dataset} decoded")
    if out is not None:
        write_table(records, out)
        click.echo(f"{len(records)} images from {dataset} -> {out}")
