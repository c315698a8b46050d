"""One table format for every IQA database: a list of `IQARecord`s, writable to and readable from CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path


class DatasetError(ValueError):
    """Bad or missing database files; the message names the file and the problem in one line."""


@dataclass(frozen=True)
class IQARecord:
    """One image with its quality score.

    `score` is normalised to [0, 1] with higher = better quality, so databases can be mixed;
    `raw_score` is the number exactly as the database publishes it.
    """

    path: str
    score: float
    raw_score: float
    database: str
    distortion: int | None = None  # distortion type (1-based, the database's own numbering)
    level: int | None = None  # distortion level, 1 = mildest
    reference: str | None = None  # reference image / content group: splits never share one
    image_set: str | None = None  # CID2013 image set (IS1..IS6)


COLUMNS = [f.name for f in fields(IQARecord)]


def write_table(records: Iterable[IQARecord], out: str | Path) -> Path:
    """Write records as CSV (columns: path, score, raw_score, database, distortion, level, reference, image_set)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(record).items()})
    return out


def read_table(path: str | Path) -> list[IQARecord]:
    """Read a CSV written by `write_table` (or any CSV with at least `path,score` columns)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: table file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        records = []
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
                raw = float(row.get("raw_score") or score)
                distortion = int(row["distortion"]) if row.get("distortion") else None
                level = int(row["level"]) if row.get("level") else None
            except ValueError as exc:
                raise DatasetError(f"{path}:{line}: {exc}") from None
            records.append(
                IQARecord(
                    path=row["path"],
                    score=score,
                    raw_score=raw,
                    database=row.get("database") or path.stem,
                    distortion=distortion,
                    level=level,
                    reference=row.get("reference") or None,
                    image_set=row.get("image_set") or None,
                )
            )
    return records


def min_max(values: Sequence[float], low: float, high: float) -> list[float]:
    """Map values from the nominal range [low, high] to [0, 1] (clipped), keeping their order inside the range."""
    span = high - low
    return [min(1.0, max(0.0, (v - low) / span)) for v in values]
