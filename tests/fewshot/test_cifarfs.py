"""CIFAR-FS: classes from Bertinetto's split files, images from `cifar100/data/<class>/`."""

from __future__ import annotations

import numpy as np
import pytest

from metalearn.episodes import DatasetError
from metalearn_fewshot.data.cifarfs import count_cifarfs, load_cifarfs
from tests.fewshot.fixtures import CIFAR_SPLITS, write_cifarfs


@pytest.fixture
def root(tmp_path):
    return write_cifarfs(tmp_path)


def test_splits_follow_the_split_files(root) -> None:
    data = load_cifarfs(root, "train", cache=False)
    assert data.name == "cifar-fs/train" and data.base_names == CIFAR_SPLITS["train"]
    assert data.images.shape == (16, 3, 32, 32)
    assert np.round(data.images[:, 0, 0, 0].numpy() / 20).tolist() == [
        k for k in (1, 2, 3, 4) for _ in range(4)
    ]
    assert data.sources == [str(root / "cifar100" / "data" / n) for n in CIFAR_SPLITS["train"]]
    assert load_cifarfs(root / "cifar100", "test", cache=False).num_base_classes == 3  # the inner folder too
    assert count_cifarfs(root) == {"train": (4, 16), "val": (2, 8), "test": (3, 12)}


def test_missing_split_file_is_named(root) -> None:
    split_file = root / "cifar100" / "splits" / "bertinetto" / "val.txt"
    split_file.unlink()
    with pytest.raises(DatasetError, match=rf"^{split_file}: CIFAR-FS split file not found$"):
        load_cifarfs(root, "val", cache=False)
    assert set(count_cifarfs(root)) == {"train", "test"}


def test_missing_class_folder_is_named(root) -> None:
    folder = root / "cifar100" / "data" / "eagle"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(DatasetError, match=rf"^{folder}: class folder listed in val.txt not found$"):
        load_cifarfs(root, "val", cache=False)


def test_empty_class_folder_and_unreadable_image_are_named(root) -> None:
    folder = root / "cifar100" / "data" / "lamp"
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=rf"^{folder}: class folder holds no images$"):
        load_cifarfs(root, "test", cache=False)
    bad = root / "cifar100" / "data" / "bear" / "bear_001.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=rf"^{bad}: cannot decode image"):
        load_cifarfs(root, "train", cache=False)


def test_a_class_listed_twice_is_refused(root) -> None:
    split_file = root / "cifar100" / "splits" / "bertinetto" / "train.txt"
    split_file.write_text("apple\nbear\napple\n")
    with pytest.raises(DatasetError, match=rf"^{split_file}: class 'apple' listed twice$"):
        load_cifarfs(root, "train", cache=False)
