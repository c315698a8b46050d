"""Database loaders read the published layouts: counts, normalised scores, parsed labels, and one-line errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from scipy.io import savemat

from metalearn_iqa.data.cid2013 import load_cid2013
from metalearn_iqa.data.kadid10k import load_kadid10k
from metalearn_iqa.data.koniq10k import load_koniq10k
from metalearn_iqa.data.livec import load_livec
from metalearn_iqa.data.records import DatasetError, IQARecord, read_table, write_table
from metalearn_iqa.data.registry import DATASETS, dataset_kind, is_synthetic, load_dataset
from metalearn_iqa.data.tid2013 import load_tid2013
from tests.iqa.fixtures import (
    CID_SETS,
    KONIQ_SETS,
    LIVEC_PRACTICE,
    make_cid2013,
    make_kadid10k,
    make_koniq10k,
    make_livec,
    make_tid2013,
)


def by_name(records: list[IQARecord]) -> dict[str, float]:
    """Map on-disk file name -> raw score."""
    return {Path(r.path).name: r.raw_score for r in records}


def check_scores(records: list[IQARecord]) -> None:
    """Scores lie in [0, 1], paths are absolute existing files, and score order follows raw order."""
    assert records
    for r in records:
        assert 0.0 <= r.score <= 1.0
        assert Path(r.path).is_absolute() and Path(r.path).is_file()
    ordered = sorted(records, key=lambda r: r.raw_score)
    assert [r.score for r in ordered] == sorted(r.score for r in records)


def assert_error(match_file: str, fn, *args) -> str:
    """Call fn(*args), expect a one-line DatasetError naming `match_file`; return the message."""
    with pytest.raises(DatasetError) as info:
        fn(*args)
    message = str(info.value)
    assert match_file in message and "\n" not in message
    return message


# ---------------------------------------------------------------- TID2013


def test_tid2013_loads_all_with_mixed_case(tmp_path: Path) -> None:
    expected = make_tid2013(tmp_path)
    records = load_tid2013(tmp_path)
    assert len(records) == 12 and by_name(records) == expected
    assert any(name != name.lower() for name in by_name(records))  # matched case-insensitively
    check_scores(records)
    for r in records:
        match = re.match(r"i(\d\d)_(\d\d)_(\d)\.bmp", Path(r.path).name, re.I)
        assert match is not None, r.path
        ref, dist, level = match.groups()
        assert (r.reference, r.distortion, r.level) == (f"I{ref}", int(dist), int(level))
        assert r.score == pytest.approx(r.raw_score / 9) and r.database == "tid2013"
    assert {r.distortion for r in records} == {1, 10, 24} and {r.level for r in records} == {1, 2}


def test_tid2013_errors(tmp_path: Path) -> None:
    assert_error("missing_root", load_tid2013, tmp_path / "missing_root")
    make_tid2013(tmp_path)
    scores = tmp_path / "mos_with_names.txt"
    good = scores.read_text()
    scores.unlink()
    assert_error("mos_with_names.txt", load_tid2013, tmp_path)
    scores.write_text("")
    assert "empty" in assert_error("mos_with_names.txt", load_tid2013, tmp_path)
    scores.write_text(good + "abc i01_01_1.bmp\n")
    assert "mos_with_names.txt:13" in assert_error("mos_with_names.txt", load_tid2013, tmp_path)
    scores.write_text(good + "5.0\n")
    assert "mos_with_names.txt:13" in assert_error("mos_with_names.txt", load_tid2013, tmp_path)
    scores.write_text(good + "5.0 i09_01_1.bmp\n")
    assert_error("i09_01_1.bmp", load_tid2013, tmp_path)


# ---------------------------------------------------------------- KADID-10k


def test_kadid10k_loads_from_folder_or_parent(tmp_path: Path) -> None:
    expected = make_kadid10k(tmp_path)
    records = load_kadid10k(tmp_path / "kadid10k")
    assert load_kadid10k(tmp_path) == records
    assert len(records) == 8 and by_name(records) == expected
    check_scores(records)
    for r in records:
        assert r.score == pytest.approx((r.raw_score - 1) / 4)
        ref, dist, level = Path(r.path).stem.split("_")
        assert (r.reference, r.distortion, r.level) == (ref, int(dist), int(level))
    assert {r.distortion for r in records} == {1, 25} and {r.level for r in records} == {1, 5}


def test_kadid10k_errors(tmp_path: Path) -> None:
    make_kadid10k(tmp_path)
    base = tmp_path / "kadid10k"
    dmos = base / "dmos.csv"
    good = dmos.read_text()
    dmos.write_text(good.replace("dist_img,ref_img,dmos,var", "image,ref,dmos,var"))
    assert "header" in assert_error("dmos.csv", load_kadid10k, base)
    dmos.write_text(good + "I01_02_01.png,I01.png,oops,0.1\n")
    assert "dmos.csv:10" in assert_error("dmos.csv", load_kadid10k, base)
    dmos.write_text(good + "I01_02_01.png,I01.png,3.0,0.1\n")
    assert_error("I01_02_01.png", load_kadid10k, base)
    dmos.write_text("")
    assert_error("dmos.csv", load_kadid10k, base)
    dmos.unlink()
    assert_error("dmos.csv", load_kadid10k, base)


# ---------------------------------------------------------------- KonIQ-10k


def test_koniq10k_scores_file(tmp_path: Path) -> None:
    expected = make_koniq10k(tmp_path)
    records = load_koniq10k(tmp_path)
    assert len(records) == 5 and by_name(records) == expected
    check_scores(records)
    for r in records:
        assert r.score == pytest.approx((r.raw_score - 1) / 4)
        assert r.reference == Path(r.path).name and r.image_set is None and r.distortion is None


def test_koniq10k_sets_file_and_small_images(tmp_path: Path) -> None:
    expected = make_koniq10k(tmp_path, sets_file=True)
    (tmp_path / "1024x768").rename(tmp_path / "512x384")
    records = load_koniq10k(tmp_path)
    assert by_name(records) == expected
    check_scores(records)
    for r in records:
        assert Path(r.path).parent.name == "512x384"
        assert r.score == pytest.approx(r.raw_score / 100)
        assert r.image_set == KONIQ_SETS[Path(r.path).name]


def test_koniq10k_errors(tmp_path: Path) -> None:
    make_koniq10k(tmp_path)
    scores = tmp_path / "koniq10k_scores_and_distributions.csv"
    good = scores.read_text()
    scores.write_text(good.replace("MOS,", "mean,", 1))
    assert "MOS" in assert_error("koniq10k_scores_and_distributions.csv", load_koniq10k, tmp_path)
    scores.write_text(good + "99.jpg,1,1,1,1,1,5,3.0,0.5,50\n")
    assert_error("99.jpg", load_koniq10k, tmp_path)
    scores.unlink()
    assert_error("koniq10k_scores_and_distributions.csv", load_koniq10k, tmp_path)


# ---------------------------------------------------------------- LIVEC


def test_livec_excludes_practice_images(tmp_path: Path) -> None:
    expected = make_livec(tmp_path)
    records = load_livec(tmp_path)
    assert len(records) == 4 and by_name(records) == expected
    assert not {Path(r.path).name for r in records} & set(LIVEC_PRACTICE)
    assert "10.jpg" in by_name(records)  # listed as 10.JPG
    check_scores(records)
    for r in records:
        assert r.score == pytest.approx(r.raw_score / 100)


def test_livec_errors(tmp_path: Path) -> None:
    make_livec(tmp_path)
    mos = tmp_path / "Data" / "AllMOS_release.mat"
    savemat(mos, {"AllMOS_release": np.array([[50.0] * 5])})
    assert "11" in assert_error("AllMOS_release.mat", load_livec, tmp_path)
    savemat(mos, {"Other": np.array([[50.0]])})
    assert "AllMOS_release" in assert_error("AllMOS_release.mat", load_livec, tmp_path)
    mos.unlink()
    assert_error("AllMOS_release.mat", load_livec, tmp_path)
    make_livec(tmp_path)
    (tmp_path / "Images" / "101.BMP").unlink()
    assert_error("101.bmp", load_livec, tmp_path)


# ---------------------------------------------------------------- CID2013


def test_cid2013_sets_and_min_max(tmp_path: Path) -> None:
    expected = make_cid2013(tmp_path)
    records = load_cid2013(tmp_path)
    assert len(records) == 6 and by_name(records) == expected
    check_scores(records)
    assert min(r.raw_score for r in records) < 0
    assert min(r.score for r in records) == 0.0 and max(r.score for r in records) == 1.0
    for r in records:
        name = Path(r.path).name
        assert r.image_set == CID_SETS[name] and r.reference == Path(name).stem
        assert Path(r.path).parent.parent.name == r.image_set


def edit_cid_sheet(xlsx: Path, edit) -> None:
    """Apply `edit` to the `CID2013 MOS` sheet of the fixture spreadsheet and save it in place."""
    book = load_workbook(xlsx)
    edit(book["CID2013 MOS"])
    book.save(xlsx)


def test_cid2013_errors(tmp_path: Path) -> None:
    make_cid2013(tmp_path)
    xlsx = tmp_path / "CID2013 data - version 12112014.xlsx"
    other = tmp_path / "cid2013 DATA - version 12112014.XLSX"  # found case-insensitively
    xlsx.rename(other)
    assert len(load_cid2013(tmp_path)) == 6
    (tmp_path / "IS1" / "co1" / "IS_I_C01_D02.jpg").unlink()
    assert_error("IS_I_C01_D02", load_cid2013, tmp_path)
    edit_cid_sheet(other, lambda sheet: sheet.append(["IS_I_C01_D03", 1, 2, 3, "n/a"]))
    assert "row 10" in assert_error(other.name, load_cid2013, tmp_path)
    edit_cid_sheet(other, lambda sheet: setattr(sheet.cell(row=3, column=5), "value", "MOS"))
    assert "header" in assert_error(other.name, load_cid2013, tmp_path)
    other.unlink()
    assert_error("CID2013 data - version 12112014.xlsx", load_cid2013, tmp_path)


# ---------------------------------------------------------------- registry and tables


def test_registry(tmp_path: Path) -> None:
    assert set(DATASETS) == {"tid2013", "kadid10k", "koniq10k", "livec", "cid2013", "synthetic"}
    assert [n for n in DATASETS if is_synthetic(n)] == ["tid2013", "kadid10k", "synthetic"]
    assert dataset_kind("LIVEC") == "authentic"
    make_tid2013(tmp_path)
    assert load_dataset("tid2013", tmp_path) == load_tid2013(tmp_path)
    message = assert_error("nope", load_dataset, "nope", tmp_path)
    assert all(name in message for name in DATASETS)


def test_table_round_trip(tmp_path: Path) -> None:
    make_cid2013(tmp_path / "cid")
    make_tid2013(tmp_path / "tid")
    records = load_cid2013(tmp_path / "cid") + load_tid2013(tmp_path / "tid")
    table = write_table(records, tmp_path / "out" / "table.csv")
    assert read_table(table) == records
    with table.open(newline="") as fh:
        assert next(csv.reader(fh))[:2] == ["path", "score"]


# ---------------------------------------------------------------- score files: range and repeated images


def test_scores_outside_the_range_are_refused_not_clipped(tmp_path: Path) -> None:
    make_kadid10k(tmp_path)
    dmos = tmp_path / "kadid10k" / "dmos.csv"
    lines = dmos.read_text().splitlines()
    name = lines[1].split(",")[0]
    for bad in ("5.3", "-0.2"):
        dmos.write_text(
            "\n".join([lines[0], lines[1].replace(lines[1].split(",")[2], bad), *lines[2:]]) + "\n"
        )
        message = assert_error("dmos.csv:2", load_kadid10k, tmp_path)
        assert bad.lstrip("-") in message and "1..5" in message and "not clipping" in message, message
    make_tid2013(tmp_path / "tid")
    scores = tmp_path / "tid" / "mos_with_names.txt"
    first, *rest = scores.read_text().splitlines()
    scores.write_text("\n".join([f"9.5 {first.split()[1]}", *rest]) + "\n")
    assert "0..9" in assert_error("mos_with_names.txt:1", load_tid2013, tmp_path / "tid")
    make_livec(tmp_path / "livec")
    mos = tmp_path / "livec" / "Data" / "AllMOS_release.mat"
    savemat(mos, {"AllMOS_release": np.array([[50.0] * 10 + [101.0]])})
    assert "entry 11" in assert_error("AllMOS_release.mat", load_livec, tmp_path / "livec")
    assert name  # the row's image exists: only its score is at fault


def test_repeated_images_in_a_score_file(tmp_path: Path) -> None:
    make_kadid10k(tmp_path)
    dmos = tmp_path / "kadid10k" / "dmos.csv"
    good = dmos.read_text()
    lines = good.splitlines()
    count = len(lines) - 1
    dmos.write_text(good + lines[1] + "\n")  # an identical repeat: used once, with a warning
    with pytest.warns(UserWarning, match=rf"dmos.csv:{count + 2}: .* repeats an identical earlier row"):
        assert len(load_kadid10k(tmp_path)) == count
    cells = lines[1].split(",")
    conflicting = ",".join([*cells[:2], "1.5", *cells[3:]])
    dmos.write_text(good + conflicting + "\n")
    message = assert_error(f"dmos.csv:{count + 2}", load_kadid10k, tmp_path)
    assert cells[0] in message and "another score" in message and "dmos.csv:2" in message
    make_koniq10k(tmp_path / "koniq")
    scores = next((tmp_path / "koniq").glob("koniq10k_*.csv"))
    rows = scores.read_text().splitlines()
    first = next(csv.DictReader(rows))
    conflicting = rows[1].replace(first["MOS"], str(float(first["MOS"]) / 2 + 1.2), 1)
    scores.write_text("\n".join([*rows, conflicting]) + "\n")
    assert "another score" in assert_error(first["image_name"], load_koniq10k, tmp_path / "koniq")
