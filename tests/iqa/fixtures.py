"""Tiny IQA database fixtures in the exact on-disk layouts their authors publish (8x8 images, a few entries).

Each `make_*` builds one database under `root` and returns {file name as on disk: raw score as published}
for the images the loader must return, so tests can compare `Path(record.path).name` -> `record.raw_score`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

# KonIQ official split used by `make_koniq10k(root, sets_file=True)`: image name -> set.
KONIQ_SETS = {
    "10004473376.jpg": "training",
    "10007357496.jpg": "training",
    "10038632315.jpg": "validation",
    "10042367636.jpg": "test",
    "10063355226.jpg": "test",
}
LIVEC_PRACTICE = [f"t{i}.bmp" for i in range(1, 8)]
# CID2013 image set of each fixture image (file name as on disk -> IS<n>).
CID_SETS = {
    "IS_I_C01_D01.jpg": "IS1",
    "IS_I_C01_D02.jpg": "IS1",
    "IS_I_C02_D01.jpg": "IS1",
    "IS_II_C01_D01.jpg": "IS2",
    "IS_II_C01_D02.JPG": "IS2",
    "IS_III_C03_D01.jpg": "IS3",
}


def _image(path: Path, seed: int) -> None:
    """Write a deterministic 8x8 RGB image; Pillow picks the format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def make_tid2013(root: str | Path) -> dict[str, float]:
    """TID2013: 2 references x 3 types x 2 levels; listed lowercase, file names on disk in mixed case."""
    root = Path(root)
    expected: dict[str, float] = {}
    lines: list[str] = []
    for ref in (1, 2):
        _image(root / "reference_images" / (f"I{ref:02d}.BMP" if ref == 1 else f"i{ref:02d}.bmp"), ref)
        for dist in (1, 10, 24):
            for level in (1, 2):
                listed = f"i{ref:02d}_{dist:02d}_{level}.bmp"
                on_disk = listed.upper() if (dist + level) % 2 else listed
                mos = round(7.5 - 1.1 * level - 0.07 * dist - 0.3 * ref, 5)
                _image(root / "distorted_images" / on_disk, len(lines) + 10)
                lines.append(f"{mos} {listed}")
                expected[on_disk] = mos
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    (root / "mos.txt").write_text("\n".join(line.split()[0] for line in lines) + "\n")
    (root / "readme").write_text("TID2013 fixture\n")
    return expected


def make_kadid10k(root: str | Path) -> dict[str, float]:
    """KADID-10k under `root/kadid10k/`: 2 references x 2 types x 2 levels plus the reference images."""
    base = Path(root) / "kadid10k"
    expected: dict[str, float] = {}
    rows: list[list[object]] = []
    for ref in (1, 2):
        _image(base / "images" / f"I{ref:02d}.png", ref)
        for dist in (1, 25):
            for level in (1, 5):
                name = f"I{ref:02d}_{dist:02d}_{level:02d}.png"
                dmos = round(4.8 - 0.7 * level + 0.01 * dist - 0.05 * ref, 3)
                _image(base / "images" / name, len(rows) + 10)
                rows.append([name, f"I{ref:02d}.png", dmos, 0.5])
                expected[name] = dmos
    with (base / "dmos.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dist_img", "ref_img", "dmos", "var"])
        writer.writerows(rows)
    return expected


def make_koniq10k(root: str | Path, sets_file: bool = False) -> dict[str, float]:
    """KonIQ-10k with `1024x768/`; the MOS file (MOS 1..5), or only the split file (MOS 0..100, `set`)."""
    root = Path(root)
    expected: dict[str, float] = {}
    rows = []
    for i, name in enumerate(KONIQ_SETS):
        mos = round(1.2 + 0.8 * i + 0.013 * (i % 2), 4)
        raw = round((mos - 1) * 25, 4) if sets_file else mos
        _image(root / "1024x768" / name, i)
        counts = [1, 2, 3, 4, 5]
        last = KONIQ_SETS[name] if sets_file else round((mos - 1) * 25, 4)
        rows.append([name, *counts, sum(counts), raw, 0.6, last])
        expected[name] = raw
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD"]
    file_name = "koniq10k_distributions_sets.csv" if sets_file else "koniq10k_scores_and_distributions.csv"
    with (root / file_name).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*header, "set" if sets_file else "MOS_zscore"])
        writer.writerows(rows)
    return expected


def _cell_array(names: list[str]) -> np.ndarray:
    """A MATLAB cell array of strings as `scipy.io.savemat` writes it (object array of shape (N, 1))."""
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = np.array([name])
    return cells


def make_livec(root: str | Path) -> dict[str, float]:
    """LIVEC: `Data/*.mat` listing the 7 practice images t1..t7 first, then 4 real images (mixed case on disk)."""
    from scipy.io import savemat

    root = Path(root)
    real = {"10.JPG": "10.jpg", "100.bmp": "100.bmp", "101.bmp": "101.BMP", "102.JPG": "102.JPG"}
    listed = LIVEC_PRACTICE + list(real)
    mos = [50.0 + i for i in range(7)] + [63.25, 12.5, 88.0, 41.7]
    for i, name in enumerate(LIVEC_PRACTICE):
        _image(root / "Images" / "trainingImages" / name, i)
    for i, on_disk in enumerate(real.values()):
        _image(root / "Images" / on_disk, i + 10)
    (root / "Data").mkdir(parents=True, exist_ok=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": _cell_array(listed)})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.full((1, len(mos)), 10.0)})
    return {on_disk: value for on_disk, value in zip(real.values(), mos[7:])}


def make_cid2013(root: str | Path) -> dict[str, float]:
    """CID2013: images in `IS{n}/co{m}/`, scores in the xlsx (title row above the header, a negative MOS)."""
    from openpyxl import Workbook

    root = Path(root)
    raw = [71.3, 55.0, -3.2, 12.75, 88.9, 40.0]
    roman = {"IS1": "I", "IS2": "II", "IS3": "III"}
    book = Workbook()
    book.active.title = "Readme"
    book.active.append(["CID2013 fixture"])
    sheet = book.create_sheet("CID2013 MOS")
    sheet.append(["CID2013 Realigned MOS scores (fixture)"])
    sheet.append([])
    sheet.append(["Source_ID", "Sharpness", "Graininess", "Lightness", "Realigned MOS"])
    for i, ((name, image_set), mos) in enumerate(zip(CID_SETS.items(), raw)):
        stem = Path(name).stem
        camera = f"co{int(stem.split('_C')[1][:2])}"
        assert stem.startswith(f"IS_{roman[image_set]}_")
        _image(root / image_set / camera / name, i)
        sheet.append([stem, 50 + i, 40 - i, 30.0, mos])
    book.save(root / "CID2013 data - version 12112014.xlsx")
    return dict(zip(CID_SETS, raw))
