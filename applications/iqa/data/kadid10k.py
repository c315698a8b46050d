"""KADID-10k loader: reads `dmos.csv` and `images/` exactly as Lin, Hosu and Saupe publish them.

10,125 distorted images `I{ref}_{type}_{level}.png`; `dmos` is on 1..5 with higher = better (despite the name).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from metalearn_iqa.data._files import (
    distorted_records,
    find_entry,
    index_folder,
    parse_score,
    read_text,
    require_dir,
    require_file,
    unique_rows,
)
from metalearn_iqa.data.records import DatasetError, IQARecord

DATABASE = "kadid10k"
SCORE_FILE = "dmos.csv"
IMAGE_DIR = "images"
HEADER = ["dist_img", "ref_img", "dmos", "var"]
DMOS_RANGE = (1.0, 5.0)
_NAME = re.compile(r"^I(\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def _database_dir(root: str | Path) -> Path:
    """Accept either the folder holding `dmos.csv` or its parent holding `kadid10k/`."""
    base = require_dir(root, "KADID-10k")
    if find_entry(base, SCORE_FILE) is None:
        nested = find_entry(base, "kadid10k")
        if nested is not None and nested.is_dir():
            return nested
    return base


def _parse_row(row: list[str], where: str) -> tuple[float, str, int, int, str]:
    """Turn one CSV row into (dmos, image name, distortion, level, reference)."""
    if len(row) != len(HEADER):
        raise DatasetError(f"{where}: expected {len(HEADER)} columns, got {len(row)}")
    name = row[0].strip()
    dmos = parse_score(row[2], where, DMOS_RANGE)
    match = _NAME.match(name)
    if match is None:
        raise DatasetError(f"{where}: image name {name!r} is not of the form I{{ref}}_{{type}}_{{level}}.png")
    ref, dist, level = match.groups()
    return dmos, name, int(dist), int(level), f"I{ref}"


def _read_rows(score_file: Path) -> list[tuple[float, str, int, int, str]]:
    """Read and validate `dmos.csv`: exact header, then one parsed tuple per non-empty row and image."""
    with io.StringIO(read_text(score_file), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{score_file}: score file is empty")
        if [h.strip() for h in header] != HEADER:
            raise DatasetError(
                f"{score_file}: bad header {','.join(header)!r}, expected {','.join(HEADER)!r}"
            )
        rows, wheres = [], []
        for row in reader:
            if any(row):
                wheres.append(f"{score_file}:{reader.line_num}")
                rows.append(_parse_row(row, wheres[-1]))
    if not rows:
        raise DatasetError(f"{score_file}: score file has a header but no rows")
    return unique_rows(rows, wheres, name=lambda r: r[1], score=lambda r: r[0])


def load_kadid10k(root: str | Path) -> list[IQARecord]:
    """Load KADID-10k; score = (dmos - 1) / 4, raw_score = dmos (a dmos outside 1..5 is refused)."""
    base = _database_dir(root)
    score_file = require_file(base, SCORE_FILE, "KADID-10k score file")
    images = find_entry(base, IMAGE_DIR) or base / IMAGE_DIR
    rows = _read_rows(score_file)
    index = index_folder(images)
    return distorted_records(rows, DMOS_RANGE, index, images, score_file, DATABASE)
