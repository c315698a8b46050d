"""The databases a command reads, loaded (and pooled) with one-line errors for a missing root or images."""

from __future__ import annotations

from dataclasses import replace

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


def load_many(names: tuple[str, ...], roots: tuple[str, ...]) -> list[IQARecord]:
    """Several databases pooled (scores are on [0, 1] already); each database's types stay distinct tasks.

    Roots pair up, in order, with the datasets that need one (every dataset but synthetic).
    """
    needing = [n for n in names if n.lower() != "synthetic"]
    if len(roots) != len(needing):
        raise CLIError(
            f"give one --root per dataset other than synthetic: {len(needing)} expected, {len(roots)} given"
        )
    root_of = iter(roots)
    records: list[IQARecord] = []
    for i, name in enumerate(names):
        part = load(name, None if name.lower() == "synthetic" else next(root_of))
        if len(names) > 1:
            part = [_offset_type(r, 100 * i) for r in part]
        records.extend(part)
    return records


def _offset_type(record: IQARecord, offset: int) -> IQARecord:
    return replace(record, distortion=None if record.distortion is None else record.distortion + offset)


def parse_types(text: str | None, option: str = "--types") -> tuple[int, ...]:
    """Comma-separated integers (distortion types, seeds); empty for no text."""
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise CLIError(f"{option} expects comma-separated integers, got {text!r}") from None


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
