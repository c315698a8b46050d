"""Name -> few-shot dataset: `load_split` for a `ClassDataset`, `split_counts` for what is on disk.

    from metalearn_fewshot.data.registry import load_split, split_counts
    train = load_split("omniglot", "~/data/omniglot", "train", rotations=4)   # ClassDataset
    split_counts("omniglot", "~/data/omniglot")   # {"background": SplitCount(964, 19280), ...}

Names: `glyphs` (embedded, generated; `root` is where to cache it, None: the user cache), `omniglot`,
`mini-imagenet`, `cifar-fs`. Every problem with the files is a one-line `DatasetError` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from metalearn.episodes import ROTATIONS, ClassDataset, DatasetError
from metalearn_fewshot.data import cifarfs, glyphs, miniimagenet, omniglot
from metalearn_fewshot.data.cache import CacheOption

Loader = Callable[[str | Path | None, str, int, int, CacheOption], ClassDataset]


class SplitCount(NamedTuple):
    """One split on disk: classes before rotation, and images."""

    classes: int
    images: int


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset.

    `splits`: every split name it accepts; `meta_splits`: the (train, validation, test) splits of the usual
    protocol; `image_size`, `channels`: what its loader gives by default; `rotations`: the papers' usual
    augmentation of the training classes (Omniglot: 4); `needs_root`: False for the embedded glyphs.
    """

    name: str
    splits: tuple[str, ...]
    meta_splits: tuple[str, str, str]
    image_size: int
    channels: int
    rotations: int
    needs_root: bool
    loader: Loader
    counter: Callable[[str | Path | None], dict[str, tuple[int, int]]]


def _load_glyphs(
    root: str | Path | None, split: str, size: int, rotations: int, cache: CacheOption
) -> ClassDataset:
    config = glyphs.GlyphConfig(size=size)
    return glyphs.load_glyphs(
        split, config, cache=root if (root is not None and cache is True) else cache, rotations=rotations
    )


def _count_glyphs(root: str | Path | None) -> dict[str, tuple[int, int]]:
    config = glyphs.GlyphConfig()
    return {
        s: (len(config.split_classes(s)), len(config.split_classes(s)) * config.instances)
        for s in glyphs.SPLITS
    }


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            DatasetInfo(
                "glyphs",
                glyphs.SPLITS,
                ("train", "val", "test"),
                28,
                1,
                1,
                False,
                _load_glyphs,
                _count_glyphs,
            ),
            DatasetInfo(
                omniglot.NAME,
                omniglot.SPLITS,
                ("train", "val", "test"),
                omniglot.IMAGE_SIZE,
                1,
                4,
                True,
                omniglot.load_omniglot,
                omniglot.count_omniglot,
            ),
            DatasetInfo(
                miniimagenet.NAME,
                (*miniimagenet.SPLITS, "validation"),
                ("train", "val", "test"),
                miniimagenet.IMAGE_SIZE,
                3,
                1,
                True,
                miniimagenet.load_miniimagenet,
                miniimagenet.count_miniimagenet,
            ),
            DatasetInfo(
                cifarfs.NAME,
                cifarfs.SPLITS,
                ("train", "val", "test"),
                cifarfs.IMAGE_SIZE,
                3,
                1,
                True,
                cifarfs.load_cifarfs,
                cifarfs.count_cifarfs,
            ),
        )
    }
)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name` (case-insensitive), or a `DatasetError` listing the valid names."""
    info = DATASETS.get(name.strip().lower())
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return info


def load_split(
    name: str,
    root: str | Path | None,
    split: str,
    image_size: int | None = None,
    rotations: int = 1,
    cache: CacheOption = True,
) -> ClassDataset:
    """One split of a registered dataset as a `ClassDataset` (decoded once, then read from the cache).

    `image_size` None: the dataset's own (`DatasetInfo.image_size`); `rotations` 1, 2 or 4 (4: each class
    also rotated by 90, 180 and 270 degrees as new classes); `cache` as in `metalearn_fewshot.data.cache`.
    The arguments are checked before any file is read.
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise DatasetError(f"{info.name}: unknown split {split!r}; choose from {', '.join(info.splits)}")
    if rotations not in ROTATIONS:
        raise DatasetError(f"{info.name}: rotations must be one of {ROTATIONS}, got {rotations}")
    size = info.image_size if image_size is None else image_size
    if size < 8:
        raise DatasetError(f"{info.name}: image_size must be at least 8 pixels, got {size}")
    if info.needs_root and root is None:
        raise DatasetError(f"{info.name}: give the folder that holds the dataset (root)")
    return info.loader(root, split, size, rotations, cache)


def split_counts(name: str, root: str | Path | None) -> dict[str, SplitCount]:
    """`{split: SplitCount(classes before rotation, images)}` for every split found under `root`."""
    info = dataset_info(name)
    if info.needs_root and root is None:
        raise DatasetError(f"{info.name}: give the folder that holds the dataset (root)")
    return {split: SplitCount(*count) for split, count in info.counter(root).items()}
