"""The decoded-array cache: the second load decodes nothing, a changed source is decoded again."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from metalearn_fewshot.data import cache as cache_module
from metalearn_fewshot.data import omniglot
from metalearn_fewshot.data.omniglot import load_omniglot
from tests.fewshot.fixtures import stroke_image, write_omniglot


@pytest.fixture
def root(tmp_path):
    return write_omniglot(tmp_path / "omniglot")


def refuse_decoding(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(omniglot, "decode_all", fail)


def entries(folder) -> list[str]:
    return sorted(p.name.split(".")[0] + p.suffix for p in folder.iterdir() if not p.name.startswith("."))


def test_second_load_reads_the_cache_memory_mapped(root, monkeypatch) -> None:
    fresh = load_omniglot(root, "background")
    folder = root / cache_module.CACHE_DIRNAME
    assert entries(folder) == ["omniglot-background-28.json", "omniglot-background-28.npy"]
    refuse_decoding(monkeypatch)
    cached = load_omniglot(root, "background", rotations=4)
    assert torch.equal(cached.images, fresh.images) and cached.base_names == fresh.base_names
    assert cached.sources == fresh.sources and cached.num_classes == 4 * fresh.num_base_classes
    mapped = np.load(next(folder.glob("*.npy")), mmap_mode="c")
    assert mapped.shape == tuple(fresh.images.shape)


def test_a_changed_source_is_decoded_again_and_the_old_entry_dropped(root, monkeypatch) -> None:
    load_omniglot(root, "background")
    old = sorted((root / cache_module.CACHE_DIRNAME).glob("*.npy"))
    drawing = root / "images_background" / "Latin" / "character01" / "0001_01.png"
    stroke_image(7, 7).save(drawing)
    os.utime(drawing, ns=(1, 1))  # a new modification time
    changed = load_omniglot(root, "background")
    new = sorted((root / cache_module.CACHE_DIRNAME).glob("*.npy"))
    assert new != old and len(new) == 1
    # a drawing added to a character: more items, decoded again
    stroke_image(1, 9).save(root / "images_background" / "Latin" / "character01" / "0001_09.png")
    assert len(load_omniglot(root, "background").images) == len(changed.images) + 1


def test_sizes_and_splits_are_cached_apart(root) -> None:
    load_omniglot(root, "background")
    load_omniglot(root, "background", image_size=14)
    load_omniglot(root, "evaluation")
    assert entries(root / cache_module.CACHE_DIRNAME) == [
        "omniglot-background-14.json",
        "omniglot-background-14.npy",
        "omniglot-background-28.json",
        "omniglot-background-28.npy",
        "omniglot-evaluation-28.json",
        "omniglot-evaluation-28.npy",
    ]


def test_a_damaged_entry_is_rebuilt(root) -> None:
    fresh = load_omniglot(root, "background")
    array = next((root / cache_module.CACHE_DIRNAME).glob("*.npy"))
    array.write_bytes(b"garbage")
    assert torch.equal(load_omniglot(root, "background").images, fresh.images)
    assert np.load(array).shape == tuple(fresh.images.shape)


def test_unwritable_data_folder_falls_back_to_the_user_cache(root, tmp_path, monkeypatch) -> None:
    (root / cache_module.CACHE_DIRNAME).write_text("a file where the cache folder would go")
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "user"))
    load_omniglot(root, "evaluation")
    (folder,) = (tmp_path / "user" / "fewshot").iterdir()
    assert folder.name.startswith("omniglot-") and entries(folder) == [
        "omniglot-evaluation-28.json",
        "omniglot-evaluation-28.npy",
    ]


def test_an_explicit_cache_folder_and_no_cache(root, tmp_path, monkeypatch) -> None:
    load_omniglot(root, "evaluation", cache=tmp_path / "elsewhere")
    assert entries(tmp_path / "elsewhere") == ["omniglot-evaluation-28.json", "omniglot-evaluation-28.npy"]
    load_omniglot(root, "evaluation", cache=False)
    assert not (root / cache_module.CACHE_DIRNAME).exists()
    refuse_decoding(monkeypatch)
    load_omniglot(root, "evaluation", cache=str(tmp_path / "elsewhere"))
