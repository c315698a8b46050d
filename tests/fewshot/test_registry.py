"""The dataset registry: names, arguments checked before any file is read, counts per split."""

from __future__ import annotations

import pytest

from metalearn.episodes import DatasetError
from metalearn_fewshot.data.omniglot import vinyals_parts
from metalearn_fewshot.data.registry import DATASETS, SplitCount, dataset_info, load_split, split_counts
from tests.fewshot.fixtures import write_cifarfs, write_miniimagenet_csv, write_omniglot


def test_names_and_defaults() -> None:
    assert list(DATASETS) == ["glyphs", "omniglot", "mini-imagenet", "cifar-fs"]
    assert dataset_info(" Omniglot ").rotations == 4 and dataset_info("mini-imagenet").image_size == 84
    assert dataset_info("cifar-fs").channels == 3 and not dataset_info("glyphs").needs_root
    with pytest.raises(
        DatasetError,
        match="unknown dataset 'imagenet'; valid names: glyphs, omniglot, mini-imagenet, cifar-fs",
    ):
        dataset_info("imagenet")
    assert issubclass(DatasetError, ValueError)


def test_load_split_through_the_registry(tmp_path) -> None:
    omniglot = write_omniglot(tmp_path / "o")
    data = load_split("omniglot", omniglot, "background", rotations=4, cache=False)
    assert data.num_classes == 36 and data.image_shape == (1, 28, 28)
    mini = write_miniimagenet_csv(tmp_path / "m")
    assert load_split("mini-imagenet", mini, "val", image_size=32, cache=False).image_shape == (3, 32, 32)
    cifar = write_cifarfs(tmp_path / "c")
    assert load_split("cifar-fs", cifar, "test", cache=False).image_shape == (3, 32, 32)


def test_arguments_are_checked_before_reading(tmp_path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(
        DatasetError, match="omniglot: unknown split 'dev'; choose from background, evaluation, train"
    ):
        load_split("omniglot", nowhere, "dev")
    with pytest.raises(DatasetError, match=r"omniglot: rotations must be one of \(1, 2, 4\), got 3"):
        load_split("omniglot", nowhere, "train", rotations=3)
    with pytest.raises(DatasetError, match="image_size must be at least 8"):
        load_split("cifar-fs", nowhere, "train", image_size=4)
    with pytest.raises(DatasetError, match="mini-imagenet: give the folder that holds the dataset"):
        load_split("mini-imagenet", None, "train")
    with pytest.raises(DatasetError, match=rf"^{nowhere}: CIFAR-FS root folder not found$"):
        load_split("cifar-fs", nowhere, "train")


def test_split_counts(tmp_path) -> None:
    counts = split_counts("omniglot", write_omniglot(tmp_path / "o"))
    assert counts["background"] == SplitCount(classes=9, images=36)
    assert counts["test"].classes == vinyals_parts(13)[2]
    assert split_counts("cifar-fs", write_cifarfs(tmp_path / "c"))["val"] == (2, 8)
    assert split_counts("glyphs", None) == {"train": (1000, 20000), "val": (200, 4000), "test": (300, 6000)}
