"""The embedded synthetic database: files, determinism, caching, records, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.data.synthetic import SyntheticConfig, default_root, generate_synthetic, load_synthetic

CONFIG = SyntheticConfig(
    size=64, references=("astronaut", "coffee:nw"), seed=3, types=(1, 10, 23), levels=(1, 3, 5)
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "db", CONFIG, progress=False)


def test_files(generated):
    images = sorted(p.name for p in (generated / "images").iterdir())
    assert "I01.png" in images and "I02.png" in images and "I02_23_05.png" in images
    assert len(images) == 2 + 2 * 3 * 3
    lines = (generated / "scores.csv").read_text().splitlines()
    assert lines[0] == "dist_img,ref_img,score,haarpsi,ms_ssim"
    assert len(lines) == 1 + 18
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["config"] == CONFIG.as_dict()
    assert manifest["references"] == {"I01": "astronaut", "I02": "coffee:nw"}
    assert manifest["counts"] == {"references": 2, "distorted": 18}
    assert {"piq", "scikit-image"} <= set(manifest["packages"])
    assert len(manifest["content_sha256"]) == 64
    assert not [p for p in generated.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_deterministic(generated, tmp_path):
    other = generate_synthetic(tmp_path / "other", CONFIG, progress=False)
    assert (other / "scores.csv").read_bytes() == (generated / "scores.csv").read_bytes()
    assert (other / "images" / "I01_23_03.png").read_bytes() == (
        generated / "images" / "I01_23_03.png"
    ).read_bytes()


def test_cached(generated):
    files = [generated / "scores.csv", generated / "manifest.json", generated / "images" / "I01_01_01.png"]
    before = [p.stat().st_mtime_ns for p in files]
    assert generate_synthetic(generated, CONFIG, progress=False) == generated
    assert [p.stat().st_mtime_ns for p in files] == before


def test_load_records(generated):
    records = load_synthetic(generated)
    assert len(records) == 18
    assert {r.database for r in records} == {"synthetic"}
    assert {r.reference for r in records} == {"I01", "I02"}
    assert {r.distortion for r in records} == {1, 10, 23}
    assert {r.level for r in records} == {1, 3, 5}
    assert all(0.0 <= r.score <= 1.0 and r.raw_score == r.score for r in records)
    assert all(Path(r.path).is_file() for r in records)
    by_key = {(r.reference, r.distortion, r.level): r.score for r in records}
    for ref in ("I01", "I02"):
        for t in (1, 10, 23):
            assert by_key[(ref, t, 1)] > by_key[(ref, t, 3)] > by_key[(ref, t, 5)]


def test_corrupt_scores(generated, tmp_path):
    root = generate_synthetic(tmp_path / "bad", CONFIG, progress=False)
    (root / "scores.csv").write_text("dist_img,ref_img,score\nI01_01_01.png,I01.png,not-a-number\n")
    with pytest.raises(DatasetError, match="scores.csv"):
        load_synthetic(root)
    (root / "scores.csv").write_text("garbage\n")
    with pytest.raises(DatasetError, match="scores.csv"):
        load_synthetic(root)


def test_corrupt_manifest(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json"):
        load_synthetic(root)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path))
    root = default_root(CONFIG)
    assert root.parent == tmp_path and root.name.startswith("synthetic-64-")
    assert default_root(CONFIG) == root and default_root(SyntheticConfig()) != root
