"""KonIQ-10k loader: reads the score CSV and `1024x768/` (or `512x384/`) as Hosu et al. publish them.

Prefers `koniq10k_scores_and_distributions.csv` (MOS on 1..5); falls back to the split file
`koniq10k_distributions_sets.csv` (MOS on 0..100, plus the official `set` column kept as `image_set`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from metalearn_iqa.data._files import (
    find_entry,
    index_folder,
    parse_score,
    read_text,
    require_dir,
    require_image,
    unique_rows,
)
from metalearn_iqa.data.records import DatasetError, IQARecord, min_max

DATABASE = "koniq10k"
SCORES_FILE = "koniq10k_scores_and_distributions.csv"
SETS_FILE = "koniq10k_distributions_sets.csv"
IMAGE_DIRS = ("1024x768", "512x384")
# score file -> (columns it must have, nominal MOS range)
_FORMATS: dict[str, tuple[tuple[str, ...], tuple[float, float]]] = {
    SCORES_FILE: (("image_name", "MOS"), (1.0, 5.0)),
    SETS_FILE: (("image_name", "MOS", "set"), (0.0, 100.0)),
}


def _score_file(base: Path) -> Path:
    """Pick the score file: the MOS file if present, else the split file; raise if neither exists."""
    for name in (SCORES_FILE, SETS_FILE):
        found = find_entry(base, name)
        if found is not None and found.is_file():
            return found
    raise DatasetError(f"{base / SCORES_FILE}: KonIQ-10k score file not found (nor {SETS_FILE})")


def _image_dir(base: Path) -> Path:
    """Return `1024x768/`, or `512x384/` when only the downscaled copy is present."""
    for name in IMAGE_DIRS:
        found = find_entry(base, name)
        if found is not None and found.is_dir():
            return found
    raise DatasetError(f"{base / IMAGE_DIRS[0]}: KonIQ-10k image folder not found (nor {IMAGE_DIRS[1]})")


def _read_rows(
    score_file: Path, required: tuple[str, ...], mos_range: tuple[float, float]
) -> list[tuple[str, float, str | None]]:
    """Read (image name, MOS, set or None) per row and image after checking the header's columns."""
    with io.StringIO(read_text(score_file), newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise DatasetError(f"{score_file}: score file is empty")
        missing = [c for c in required if c not in reader.fieldnames]
        if missing:
            raise DatasetError(f"{score_file}: bad header, missing column(s) {', '.join(missing)}")
        rows, wheres = [], []
        for row in reader:
            where = f"{score_file}:{reader.line_num}"
            name = (row["image_name"] or "").strip()
            if not name:
                raise DatasetError(f"{where}: empty image_name")
            rows.append((name, parse_score(row["MOS"], where, mos_range), row.get("set")))
            wheres.append(where)
    if not rows:
        raise DatasetError(f"{score_file}: score file has a header but no rows")
    return unique_rows(rows, wheres, name=lambda r: r[0], score=lambda r: r[1])


def load_koniq10k(root: str | Path) -> list[IQARecord]:
    """Load KonIQ-10k; score = MOS mapped from its file's range to [0, 1]; each image is its own reference."""
    base = require_dir(root, "KonIQ-10k")
    score_file = _score_file(base)
    required, mos_range = _FORMATS[SCORES_FILE if score_file.name.lower() == SCORES_FILE else SETS_FILE]
    rows = _read_rows(score_file, required, mos_range)
    images = _image_dir(base)
    index = index_folder(images)
    scores = min_max([row[1] for row in rows], *mos_range)
    # Shaped like `distorted_records` (flagged by `duplicates`), with an authentic image's fields instead.
    return [
        IQARecord(
            path=require_image(index, name, images, score_file.name),
            score=score,
            raw_score=mos,
            database=DATABASE,
            reference=name,
            image_set=image_set.strip() if image_set else None,
        )
        for (name, mos, image_set), score in zip(rows, scores)
    ]
