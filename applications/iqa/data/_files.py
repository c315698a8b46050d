"""File helpers shared by the database loaders: root checks, case-insensitive lookup, strict number parsing.

Published databases mix upper and lower case in file names, so lookups go through a per-folder index
built once (one directory listing) instead of one filesystem call per image.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from metalearn_iqa.data.records import DatasetError, IQARecord, min_max


def require_dir(root: str | Path, database: str) -> Path:
    """Return `root` as an absolute Path, or raise DatasetError if it is not an existing folder."""
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not path.is_dir():
        raise DatasetError(f"{path}: {database} root folder not found")
    return path


def index_folder(folder: Path) -> dict[str, Path]:
    """Map every entry of `folder` to its Path, keyed by exact name and by lowercased name.

    Exact names win over a lowercased key, so a folder holding both `a.bmp` and `A.BMP` still resolves
    each exactly. Raises DatasetError if the folder does not exist.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found")
    names = sorted(entry.name for entry in os.scandir(folder))
    index: dict[str, Path] = {}
    for name in names:
        index.setdefault(name.lower(), folder / name)
    for name in names:
        index[name] = folder / name
    return index


def lookup(index: Mapping[str, Path], name: str) -> Path | None:
    """Find `name` in an `index_folder` index: exact match first, then case-insensitively."""
    return index.get(name) or index.get(name.lower())


def find_entry(folder: Path, name: str) -> Path | None:
    """Find one entry (file or folder) directly under `folder`, case-insensitively; None if absent."""
    if not folder.is_dir():
        return None
    return lookup(index_folder(folder), name)


def require_file(folder: Path, name: str, what: str) -> Path:
    """Find the file `name` directly under `folder` (case-insensitively) or raise DatasetError naming it."""
    found = find_entry(folder, name)
    if found is None or not found.is_file():
        raise DatasetError(f"{folder / name}: {what} not found")
    return found


def require_image(index: Mapping[str, Path], name: str, folder: Path, source: str) -> str:
    """Resolve a listed image name to its absolute on-disk path string; raise if it is not on disk."""
    found = lookup(index, name)
    if found is None:
        raise DatasetError(f"{folder / name}: image listed in {source} not found on disk")
    return str(found)


def read_text(path: Path) -> str:
    """A score file's text (UTF-8, a byte-order mark allowed), or a DatasetError naming the file when it
    does not decode (a binary or foreign-encoded file)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") from None


def parse_float(text: object, where: str) -> float:
    """Parse a finite float, or raise DatasetError naming `where` (file and line) and the bad value."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: cannot parse number {text!r}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: score is not finite ({text!r})")
    return value


def parse_score(text: object, where: str, valid: tuple[float, float]) -> float:
    """`parse_float`, refusing a score outside the database's published range `valid` (a corrupted or
    foreign score file): mapping scores to [0, 1] would otherwise clip it silently."""
    value = parse_float(text, where)
    low, high = valid
    if not low <= value <= high:
        raise DatasetError(
            f"{where}: score {value:g} is outside the database's range {low:g}..{high:g} (not clipping it)"
        )
    return value


Row = TypeVar("Row")


def unique_rows(
    rows: Sequence[Row], wheres: Sequence[str], name: Callable[[Row], str], score: Callable[[Row], float]
) -> list[Row]:
    """`rows` with each image once. A row repeating an earlier one's image and score is dropped with a
    warning; one giving the same image another score is a DatasetError naming both places."""
    first: dict[str, tuple[float, str]] = {}
    kept = []
    for row, where in zip(rows, wheres):
        key = name(row)
        if key in first:
            old, old_where = first[key]
            if score(row) != old:
                raise DatasetError(
                    f"{where}: {key} listed again with another score ({score(row):g}; {old_where} gives {old:g})"
                )
            warnings.warn(f"{where}: {key} repeats an identical earlier row; using it once", stacklevel=3)
            continue
        first[key] = (score(row), where)
        kept.append(row)
    return kept


def span_normalise(values: Sequence[float]) -> list[float]:
    """Min-max normalise over the values themselves (order kept, range [0, 1]); all-equal values map to 0.5."""
    low, high = min(values), max(values)
    if high == low:
        return [0.5 for _ in values]
    return [(v - low) / (high - low) for v in values]


DistortedRow = tuple[float, str, int, int, str]
"""(raw score, image name, distortion type, level, reference) as parsed from a synthetic database's score file."""


def distorted_records(
    rows: Sequence[DistortedRow],
    score_range: tuple[float, float],
    index: Mapping[str, Path],
    images: Path,
    score_file: Path,
    database: str,
) -> list[IQARecord]:
    """Records of a synthetic (distortion-labelled) database; every listed image must exist on disk."""
    scores = min_max([row[0] for row in rows], *score_range)
    return [
        IQARecord(
            path=require_image(index, name, images, score_file.name),
            score=score,
            raw_score=raw,
            database=database,
            distortion=dist,
            level=level,
            reference=ref,
        )
        for (raw, name, dist, level, ref), score in zip(rows, scores)
    ]
