"""TID2013 loader: reads `mos_with_names.txt` and `distorted_images/` exactly as Ponomarenko et al. publish them.

3,000 distorted images `iRR_TT_L.bmp` (reference RR, distortion type TT 1..24, level L 1..5), MOS on 0..9.
"""

from __future__ import annotations

import re
from pathlib import Path

# The same helper list as kadid10k.py's import (flagged by `duplicates`): shared helpers, no repeated code.
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

DATABASE = "tid2013"
SCORE_FILE = "mos_with_names.txt"
IMAGE_DIR = "distorted_images"
MOS_RANGE = (0.0, 9.0)
_NAME = re.compile(r"^i(\d{2})_(\d{2})_(\d)\.bmp$", re.IGNORECASE)


def _parse_line(line: str, where: str) -> tuple[float, str, int, int, str]:
    """Split one `<mos> <name>` line into (mos, name, distortion, level, reference)."""
    parts = line.split()
    if len(parts) != 2:
        raise DatasetError(f"{where}: expected '<mos> <name>', got {line.strip()!r}")
    mos = parse_score(parts[0], where, MOS_RANGE)
    match = _NAME.match(parts[1])
    if match is None:
        raise DatasetError(f"{where}: image name {parts[1]!r} is not of the form iRR_TT_L.bmp")
    ref, dist, level = match.groups()
    return mos, parts[1], int(dist), int(level), f"I{ref}"


def load_tid2013(root: str | Path) -> list[IQARecord]:
    """Load TID2013 from its root folder; score = MOS / 9, raw_score = MOS (a MOS outside 0..9 is refused)."""
    base = require_dir(root, "TID2013")
    score_file = require_file(base, SCORE_FILE, "TID2013 score file")
    images = find_entry(base, IMAGE_DIR) or base / IMAGE_DIR
    index = index_folder(images)
    rows, wheres = [], []
    for number, line in enumerate(read_text(score_file).splitlines(), start=1):
        if line.strip():
            wheres.append(f"{score_file}:{number}")
            rows.append(_parse_line(line, wheres[-1]))
    if not rows:
        raise DatasetError(f"{score_file}: score file is empty")
    rows = unique_rows(rows, wheres, name=lambda r: r[1], score=lambda r: r[0])
    return distorted_records(rows, MOS_RANGE, index, images, score_file, DATABASE)
