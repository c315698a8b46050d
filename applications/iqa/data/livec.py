"""LIVE In the Wild Challenge (LIVEC) loader: reads `Data/*.mat` and `Images/` as Ghadiyaram and Bovik publish them.

The first 7 entries of `AllImages_release` (`t1.bmp`..`t7.bmp`) are the subjects' practice images and are
dropped by the field's convention (entries 8..1169 are the 1,162 test images every paper reports on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The same helper list as koniq10k.py's import (flagged by `duplicates`): shared helpers, no repeated code.
from metalearn_iqa.data._files import (
    find_entry,
    index_folder,
    parse_score,
    require_dir,
    require_image,
    unique_rows,
)
from metalearn_iqa.data.records import DatasetError, IQARecord, min_max

DATABASE = "livec"
NAMES_FILE = "AllImages_release.mat"
MOS_FILE = "AllMOS_release.mat"
IMAGE_DIR = "Images"
PRACTICE_ENTRIES = 7
MOS_RANGE = (0.0, 100.0)


def _load_variable(data_dir: Path, file_name: str, variable: str) -> np.ndarray:
    """Load one variable from a .mat file under `Data/`, raising DatasetError for a missing/bad file."""
    from scipy.io import loadmat  # scipy.io is slow to import; only LIVEC needs it

    path = find_entry(data_dir, file_name)
    if path is None or not path.is_file():
        raise DatasetError(f"{data_dir / file_name}: LIVEC score file not found")
    try:
        contents = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DatasetError(f"{path}: cannot read MATLAB file ({exc})") from None
    if variable not in contents:
        raise DatasetError(f"{path}: variable {variable!r} not found")
    return np.asarray(contents[variable])


def _cell_names(cells: np.ndarray, path: Path) -> list[str]:
    """Turn a loaded MATLAB cell array of strings (object array, each cell an array of one str) into names."""
    names = []
    for number, cell in enumerate(cells.ravel(), start=1):
        values = np.asarray(cell).ravel()
        if values.size != 1 or not str(values[0]).strip():
            raise DatasetError(f"{path}: entry {number} is not a file name ({cell!r})")
        names.append(str(values[0]).strip())
    return names


def load_livec(root: str | Path) -> list[IQARecord]:
    """Load LIVEC without its 7 practice images; score = MOS / 100 (a MOS outside 0..100 is refused)."""
    base = require_dir(root, "LIVEC")
    data_dir = find_entry(base, "Data") or base / "Data"
    names = _cell_names(_load_variable(data_dir, NAMES_FILE, "AllImages_release"), data_dir / NAMES_FILE)
    mos_path = data_dir / MOS_FILE
    raw = _load_variable(data_dir, MOS_FILE, "AllMOS_release").ravel()
    mos = [parse_score(v, f"{mos_path}: entry {i}", MOS_RANGE) for i, v in enumerate(raw, start=1)]
    if len(names) != len(mos):
        raise DatasetError(f"{mos_path}: {len(mos)} scores but {NAMES_FILE} lists {len(names)} images")
    if len(names) <= PRACTICE_ENTRIES:
        raise DatasetError(
            f"{data_dir / NAMES_FILE}: no images after the {PRACTICE_ENTRIES} practice entries"
        )
    wheres = [f"{data_dir / NAMES_FILE}: entry {i}" for i in range(PRACTICE_ENTRIES + 1, len(names) + 1)]
    pairs = unique_rows(
        list(zip(names[PRACTICE_ENTRIES:], mos[PRACTICE_ENTRIES:])), wheres, lambda r: r[0], lambda r: r[1]
    )
    names, mos = [name for name, _ in pairs], [value for _, value in pairs]
    images = find_entry(base, IMAGE_DIR) or base / IMAGE_DIR
    index = index_folder(images)
    scores = min_max(mos, *MOS_RANGE)
    return [
        IQARecord(
            path=require_image(index, name, images, NAMES_FILE),
            score=score,
            raw_score=value,
            database=DATABASE,
            reference=name,
        )
        for name, value, score in zip(names, mos, scores)
    ]
