"""The embedded synthetic database: files, determinism, caching, atomic writes, records, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import metalearn_iqa.data.synthetic as synthetic
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.data.synthetic import SyntheticConfig, default_root, generate_synthetic, load_synthetic

CONFIG = SyntheticConfig(
    size=64, references=("astronaut", "coffee:nw"), seed=3, types=(1, 13, 23), levels=(1, 3, 5)
)
N_DISTORTED = 2 * 3 * 3


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def _no_temp_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "db", CONFIG, progress=False)


@pytest.fixture
def copy(generated, tmp_path) -> Path:
    """A private copy of the generated database, for tests that change or break it."""
    return Path(shutil.copytree(generated, tmp_path / "copy"))


def test_files(generated):
    images = {p.name for p in (generated / "images").iterdir()}
    expected = {"I01.png", "I02.png"} | {
        f"I{r:02d}_{t:02d}_{lv:02d}.png" for r in (1, 2) for t in CONFIG.types for lv in CONFIG.levels
    }
    assert images == expected
    with (generated / "scores.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["dist_img", "ref_img", "score", "haarpsi", "ms_ssim"]
    assert {row[0] for row in rows[1:]} == expected - {"I01.png", "I02.png"} and len(rows) == 1 + N_DISTORTED
    assert all(row[1] == row[0][:3] + ".png" for row in rows[1:])
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["version"] == synthetic.MANIFEST_VERSION
    assert manifest["config"] == CONFIG.as_dict()
    assert manifest["references"] == {"I01": "astronaut", "I02": "coffee:nw"}
    assert manifest["counts"] == {"references": 2, "distorted": N_DISTORTED}
    assert {"piq", "scikit-image", "torch"} <= set(manifest["packages"])
    assert manifest["content_sha256"] == synthetic._content_hash(generated)
    assert _no_temp_left(generated.parent)


def test_deterministic(generated, tmp_path):
    other = generate_synthetic(tmp_path / "other", CONFIG, progress=False)
    assert _files(other) == _files(generated)  # scores.csv, manifest.json and every image, byte for byte


def test_cached(generated):
    before = _mtimes(generated)
    assert generate_synthetic(generated, CONFIG, progress=False) == generated
    assert load_synthetic(generated, CONFIG) and load_synthetic(generated)
    assert _mtimes(generated) == before


def test_config_change_regenerates(generated, copy):
    changed = dataclasses.replace(CONFIG, types=(23,))
    generate_synthetic(copy, changed, progress=False)
    assert json.loads((copy / "manifest.json").read_text())["config"] == changed.as_dict()
    names = {p.name for p in (copy / "images").iterdir()}
    assert names == {"I01.png", "I02.png"} | {f"I{r:02d}_23_{lv:02d}.png" for r in (1, 2) for lv in (1, 3, 5)}
    # Seeded per (reference, type): dropping the other types leaves type 23's images as they were.
    assert (copy / "images/I02_23_05.png").read_bytes() == (generated / "images/I02_23_05.png").read_bytes()
    assert _no_temp_left(copy.parent)


def test_manifest_version_change_regenerates(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"] = synthetic.MANIFEST_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    before = (copy / "scores.csv").stat().st_mtime_ns
    generate_synthetic(copy, CONFIG, progress=False)
    assert json.loads((copy / "manifest.json").read_text())["version"] == synthetic.MANIFEST_VERSION
    assert (copy / "scores.csv").stat().st_mtime_ns != before


def test_failed_generation_leaves_nothing_that_looks_complete(generated, copy, tmp_path, monkeypatch):
    calls = []

    def failing_scores(*args):
        calls.append(1)
        if len(calls) == 2:  # after the first reference's images and scores
            raise RuntimeError("interrupted")
        return real_scores(*args)

    real_scores = synthetic.fr_scores
    monkeypatch.setattr(synthetic, "fr_scores", failing_scores)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_synthetic(fresh, CONFIG, progress=False)
    assert not fresh.exists() and _no_temp_left(tmp_path)
    # Regenerating an existing database for another config fails too: the old one stays intact.
    before = _files(copy)
    calls.clear()
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_synthetic(copy, dataclasses.replace(CONFIG, seed=4), progress=False)
    assert _files(copy) == before and _no_temp_left(tmp_path)
    monkeypatch.setattr(synthetic, "fr_scores", real_scores)
    assert _files(generate_synthetic(fresh, CONFIG, progress=False)) == _files(generated)


def test_load_records(generated):
    records = load_synthetic(generated)
    assert len(records) == N_DISTORTED
    assert {r.database for r in records} == {"synthetic"}
    assert {r.reference for r in records} == {"I01", "I02"}
    assert {r.distortion for r in records} == set(CONFIG.types)
    assert {r.level for r in records} == set(CONFIG.levels)
    assert all(0.0 <= r.score <= 1.0 and r.raw_score == r.score for r in records)
    assert all(Path(r.path).is_file() and Path(r.path).parent == generated / "images" for r in records)
    by_key = {(r.reference, r.distortion, r.level): r.score for r in records}
    assert len(by_key) == N_DISTORTED
    for ref in ("I01", "I02"):
        for t in CONFIG.types:
            assert by_key[(ref, t, 1)] > by_key[(ref, t, 3)] > by_key[(ref, t, 5)], (ref, t)


def test_load_generates_at_default_root(generated, tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    records = load_synthetic(config=CONFIG)
    root = default_root(CONFIG)
    assert root.parent == tmp_path / "data" and _files(root) == _files(generated)
    assert {Path(r.path).parent for r in records} == {root / "images"}


@pytest.mark.parametrize(
    "text",
    [
        "dist_img,ref_img,score\nI01_01_01.png,I01.png,not-a-number\n",
        "dist_img,ref_img,score\nI01_01_01.png,I01.png,1.5\n",
        "dist_img,ref_img,score\nI01.png,I01.png,0.5\n",
        "dist_img,ref_img,score\n",
        "garbage\n",
    ],
    ids=["not-a-number", "out-of-range", "bad-name", "no-rows", "no-header"],
)
def test_corrupt_scores(copy, text):
    (copy / "scores.csv").write_text(text)
    with pytest.raises(DatasetError, match="scores.csv"):
        load_synthetic(copy)


def test_missing_scores(copy):
    (copy / "scores.csv").unlink()
    with pytest.raises(DatasetError, match="scores.csv"):
        load_synthetic(copy)


def test_missing_manifest_is_an_error_not_a_rewrite(copy, monkeypatch):
    def no_rewrite(*args, **kwargs):
        raise AssertionError("load_synthetic regenerates a folder that holds a database but no manifest")

    monkeypatch.setattr(synthetic, "generate_synthetic", no_rewrite)
    (copy / "manifest.json").unlink()
    before = _mtimes(copy)
    with pytest.raises(DatasetError, match="manifest.json"):
        load_synthetic(copy)
    assert _mtimes(copy) == before


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": 1}'])
def test_corrupt_manifest(copy, text):
    (copy / "manifest.json").write_text(text)
    with pytest.raises(DatasetError, match="manifest.json"):
        load_synthetic(copy)


def test_refuses_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="other files"):
        generate_synthetic(tmp_path, CONFIG, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "change",
    [
        {"types": (26,)},
        {"levels": (0,)},
        {"size": 32},
        {"references": ()},
        {"references": ("no_such_image",)},
    ],
)
def test_bad_config(tmp_path, change):
    with pytest.raises(ValueError):
        generate_synthetic(tmp_path / "db", dataclasses.replace(CONFIG, **change), progress=False)
    assert not (tmp_path / "db").exists() and _no_temp_left(tmp_path)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path))
    root = default_root(CONFIG)
    assert root.parent == tmp_path and root.name == f"synthetic-64-{CONFIG.key()}"
    assert default_root(CONFIG) == root
    for change in ({"seed": 4}, {"types": (1, 13)}, {"levels": (1, 5)}, {"references": ("astronaut",)}):
        assert default_root(dataclasses.replace(CONFIG, **change)) != root
    assert default_root().name.startswith("synthetic-128-") and default_root().parent == tmp_path
    # references=None means the default list: the same database as naming that list.
    explicit = SyntheticConfig(references=synthetic.DEFAULT_REFERENCES)
    assert default_root(explicit) == default_root(SyntheticConfig())
    monkeypatch.delenv("METALEARN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # computes a path only; nothing is written
    assert default_root(CONFIG) == tmp_path / "home" / ".cache" / "metalearn" / root.name


# -------------------------------------------------------------------------------------- reference tiles


def test_tile_is_the_photo_at_native_scale() -> None:
    from skimage import data

    tile = synthetic.reference_image("astronaut@0,128", 128)
    raw = np.asarray(data.astronaut())
    assert tile.shape == (128, 128, 3) and tile.dtype == np.float32
    expected = (raw[0:128, 128:256, :3] / 255.0).astype(np.float32)
    np.testing.assert_array_equal(tile, expected)  # exact pixels: cut out, not resampled
    other = synthetic.reference_image("astronaut@128,0", 128)
    assert not np.array_equal(tile, other)  # rows and columns are not swapped


@pytest.mark.parametrize("name", ["astronaut@450,0", "astronaut@0,-1", "astronaut@0,385"])
def test_tile_leaving_the_photo(name: str) -> None:
    with pytest.raises(ValueError, match="leaves the 512x512 photo"):
        synthetic.reference_image(name, 128)


def test_tile_syntax_error() -> None:
    with pytest.raises(ValueError, match="name@row,column"):
        synthetic.reference_image("astronaut@12", 128)


def test_grace_hopper_loads_from_matplotlib() -> None:
    tile = synthetic.reference_image("grace_hopper@44,0", 64)
    whole = synthetic.reference_image("grace_hopper", 32)
    assert tile.shape == (64, 64, 3) and whole.shape == (32, 32, 3)
    assert 0.0 <= tile.min() < tile.max() <= 1.0 and np.ptp(whole) > 0.1
