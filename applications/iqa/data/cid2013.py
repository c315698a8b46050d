"""CID2013 loader: reads `IS{1..6}/co{1..6}/*.jpg` and the scores spreadsheet as Virtanen et al. publish them.

Scores are the `Realigned MOS` column of sheet `CID2013 MOS` in `CID2013 data - version 12112014.xlsx`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from metalearn_iqa.data._files import parse_float, require_dir, span_normalise, unique_rows
from metalearn_iqa.data.records import DatasetError, IQARecord

DATABASE = "cid2013"
SCORE_FILE = "CID2013 data - version 12112014.xlsx"
SHEET = "CID2013 MOS"
ID_COLUMN = "Source_ID"
MOS_COLUMN = "Realigned MOS"
HEADER_SEARCH_ROWS = 10
_SET_DIR = re.compile(r"^is(\d+)$", re.IGNORECASE)
_CAMERA_DIR = re.compile(r"^co(\d+)$", re.IGNORECASE)


def _score_file(base: Path) -> Path:
    """Find the spreadsheet directly under the root (exact name case-insensitively, else a lone `cid2013*.xlsx`)."""
    files = [p for p in base.iterdir() if p.is_file() and p.suffix.lower() == ".xlsx"]
    exact = [p for p in files if p.name.lower() == SCORE_FILE.lower()]
    loose = [p for p in files if p.name.lower().startswith("cid2013")]
    if exact:
        return exact[0]
    if len(loose) == 1:
        return loose[0]
    raise DatasetError(f"{base / SCORE_FILE}: CID2013 score spreadsheet not found")


def _header_columns(rows: Iterable[tuple[object, ...]], path: Path) -> tuple[int, int, int]:
    """Scan the first rows for the header; return (header row number, Source_ID index, Realigned MOS index)."""
    for number, row in enumerate(rows, start=1):
        cells = [str(c).strip().lower() if c is not None else "" for c in row]
        if ID_COLUMN.lower() in cells and MOS_COLUMN.lower() in cells:
            return number, cells.index(ID_COLUMN.lower()), cells.index(MOS_COLUMN.lower())
        if number >= HEADER_SEARCH_ROWS:
            break
    raise DatasetError(
        f"{path}: bad header, no row with {ID_COLUMN!r} and {MOS_COLUMN!r} in the first {HEADER_SEARCH_ROWS} rows of sheet {SHEET!r}"
    )


def _score_rows(book: Any, path: Path) -> tuple[list[tuple[str, float]], list[str]]:
    """(Source_ID, Realigned MOS) pairs of the score sheet, and where each was read."""
    sheets = {name.strip().lower(): name for name in book.sheetnames}
    if SHEET.lower() not in sheets:
        raise DatasetError(f"{path}: sheet {SHEET!r} not found (sheets: {', '.join(book.sheetnames)})")
    rows = book[sheets[SHEET.lower()]].iter_rows(values_only=True)
    header_row, id_col, mos_col = _header_columns(rows, path)
    pairs: list[tuple[str, float]] = []
    wheres: list[str] = []
    for number, row in enumerate(rows, start=header_row + 1):
        source = row[id_col] if id_col < len(row) else None
        value = row[mos_col] if mos_col < len(row) else None
        if source is None or not str(source).strip():
            if value is None:
                continue  # blank row (spreadsheets often end with some)
            raise DatasetError(f"{path}: row {number}: {MOS_COLUMN} given but {ID_COLUMN} is empty")
        pairs.append((str(source).strip(), parse_float(value, f"{path}: row {number}")))
        wheres.append(f"{path}: row {number}")
    return pairs, wheres


def _read_scores(path: Path) -> list[tuple[str, float]]:
    """Read (Source_ID, Realigned MOS) pairs from the spreadsheet with openpyxl in read-only mode."""
    from openpyxl import load_workbook  # heavy import; only CID2013 needs it

    with path.open("rb") as handle:  # ours to close: openpyxl leaves its own open when a file is not xlsx
        try:
            book = load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises several types for non-xlsx files
            raise DatasetError(f"{path}: cannot read spreadsheet ({exc})") from None
        try:
            pairs, wheres = _score_rows(book, path)
        finally:
            book.close()
    if not pairs:
        raise DatasetError(f"{path}: sheet {SHEET!r} has a header but no scores")
    return unique_rows(pairs, wheres, name=lambda r: r[0].lower(), score=lambda r: r[1])


def _index_images(base: Path) -> dict[str, tuple[Path, str]]:
    """Map lowercased image stem -> (path, image set `IS<n>`) over `IS*/co*/*.jpg`, one listing per folder."""
    index: dict[str, tuple[Path, str]] = {}
    for set_entry in sorted(os.scandir(base), key=lambda e: e.name):
        set_match = _SET_DIR.match(set_entry.name)
        if not (set_match and set_entry.is_dir()):
            continue
        for camera in sorted(os.scandir(set_entry.path), key=lambda e: e.name):
            if not (_CAMERA_DIR.match(camera.name) and camera.is_dir()):
                continue
            for image in os.scandir(camera.path):
                stem, ext = os.path.splitext(image.name)
                if ext.lower() in (".jpg", ".jpeg"):
                    index.setdefault(stem.lower(), (Path(image.path), f"IS{int(set_match.group(1))}"))
    return index


def load_cid2013(root: str | Path) -> list[IQARecord]:
    """Load CID2013; score = Realigned MOS min-max normalised over the loaded database.

    Realigned MOS is nominally 0..100 but can be negative, so a fixed range would clip (and tie) the worst
    images; min-max over the database keeps their order and still maps scores to [0, 1].
    """
    base = require_dir(root, "CID2013")
    score_file = _score_file(base)
    pairs = _read_scores(score_file)
    index = _index_images(base)
    scores = span_normalise([mos for _, mos in pairs])
    records = []
    for (source, mos), score in zip(pairs, scores):
        found = index.get(source.lower())
        if found is None:
            raise DatasetError(
                f"{base / (source + '.jpg')}: image listed in {score_file.name} not found on disk"
            )
        path, image_set = found
        records.append(
            IQARecord(
                path=str(path),
                score=score,
                raw_score=mos,
                database=DATABASE,
                reference=path.stem,
                image_set=image_set,
            )
        )
    return records
