"""The databases a command reads, loaded (and pooled) with one-line errors for a missing root or images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from metalearn.distributed import local_main_first
from metalearn_iqa.cli.errors import CLIError
from metalearn_iqa.data.records import DatasetError, IQARecord


def load(name: str, root: str | None) -> list[IQARecord]:
    """One database's records; --root is required for all but the embedded synthetic one."""
    from metalearn_iqa.data.registry import load_dataset

    if root is None and name.lower() != "synthetic":
        raise CLIError(f"--root is required for dataset {name!r}")
    with local_main_first():  # under torchrun: one rank per machine generates the synthetic database
        records = load_dataset(name, root)  # type: ignore[arg-type]
    if not records:
        raise CLIError(f"{root}: dataset {name!r} has no images")
    return records


def load_many(names: tuple[str, ...], roots: tuple[str, ...], option: str = "--dataset") -> list[IQARecord]:
    """Several databases pooled (scores are on [0, 1] already); each database's types stay distinct tasks.

    Roots pair up, in order, with the datasets that need one (every dataset but synthetic).
    """
    needing = [n for n in names if n.lower() != "synthetic"]
    if len(roots) != len(needing):
        raise CLIError(
            f"give one --root per dataset other than synthetic: {len(needing)} expected, {len(roots)} given"
        )
    folders = iter(roots)
    pairs = [
        (n.lower(), None if n.lower() == "synthetic" else str(Path(next(folders)).resolve())) for n in names
    ]
    for i, pair in enumerate(pairs):
        if pair in pairs[:i]:
            where = f" in {pair[1]}" if pair[1] else ""
            raise CLIError(f"{option} {names[i]}{where} is given twice: its images would count twice")
    root_of = iter(roots)
    records: list[IQARecord] = []
    for i, name in enumerate(names):
        part = load(name, None if name.lower() == "synthetic" else next(root_of))
        if len(names) > 1:
            part = [_offset_type(r, 100 * i) for r in part]
        records.extend(part)
    return records


def note_if_upscaled(records: list[IQARecord], crop: int, option: str = "--train-crop") -> None:
    """One `note:` line on stderr when `crop` is larger than every image (each is then upscaled to it,
    rarely what was meant). Reads headers only, and only until one image is large enough."""
    from metalearn_iqa.images.decode import image_shape

    largest = 0
    for record in records:
        side = min(image_shape(record.path))
        if side >= crop:
            return
        largest = max(largest, side)
    if records:
        click.echo(
            f"note: {option} {crop} is larger than every image (the largest is {largest} px on its shorter "
            "side): images are upscaled to it",
            err=True,
        )


def _offset_type(record: IQARecord, offset: int) -> IQARecord:
    return replace(record, distortion=None if record.distortion is None else record.distortion + offset)


def check_images(records: list[IQARecord]) -> None:
    """Decode every image with the rule training uses; one line naming the first bad one (and how many)."""
    from metalearn_iqa.images.decode import read_image

    bad = []
    for record in records:
        try:
            read_image(record.path)
        except DatasetError as exc:
            bad.append(str(exc).splitlines()[0])
    if bad:
        more = f" (and {len(bad) - 1} more unreadable images)" if len(bad) > 1 else ""
        raise CLIError(f"{bad[0]}{more}")
