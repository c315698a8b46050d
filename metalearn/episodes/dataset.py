"""A class-indexed image set: decoded uint8 arrays grouped by class, in memory or memory-mapped.

Episodes gather a few dozen items from one big `(items, C, H, W)` uint8 tensor by index, so a sampler never
decodes an image. Rotated copies (90, 180, 270 degrees, the Omniglot convention) are new classes made at
sampling time: nothing is stored four times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class DatasetError(ValueError):
    """Bad or missing few-shot data; the message names the file (or class and split) and the problem in one
    line. Applications raise it for their files, the core for what a sampler cannot honour."""


ROTATIONS = (1, 2, 4)
"""Accepted `rotations`: 1 (none), 2 (0 and 180 degrees), 4 (0, 90, 180, 270 degrees)."""


class ClassDataset:
    """Items grouped by class: `images[starts[c] : starts[c] + sizes[c]]` are base class `c`'s items.

    - `images`: uint8 `(items, C, H, W)`, a tensor or a numpy array (a `np.memmap` stays on disk and is
      read page by page as episodes touch it). The items of one class are contiguous, classes in order.
    - `class_sizes`: items per base class, summing to `len(images)`.
    - `class_names`: one name per base class (unique).
    - `name`: the split's name, for error messages (`"omniglot/train"`).
    - `sources`: optionally, one file or folder per base class (named by errors about that class).
    - `rotations`: 1, 2 or 4. With 4, each base class also appears rotated by 90, 180 and 270 degrees as
      three more classes (`"<name>@90"` ...): class `i` is base class `i // rotations` rotated by
      `(i % rotations) * 360 / rotations` degrees counter-clockwise. Images must be square to rotate by 90.
    """

    def __init__(
        self,
        images: Tensor | np.ndarray,
        class_sizes: Sequence[int],
        class_names: Sequence[str],
        name: str = "dataset",
        sources: Sequence[str] | None = None,
        rotations: int = 1,
    ) -> None:
        self.images = _as_uint8_tensor(images, name)
        self.name = name
        self.base_names = [str(n) for n in class_names]
        self.sources = [str(s) for s in sources] if sources is not None else None
        self.rotations = rotations
        sizes = torch.as_tensor(list(class_sizes), dtype=torch.int64)
        if len(sizes) != len(self.base_names):
            raise DatasetError(f"{name}: {len(sizes)} class sizes but {len(self.base_names)} class names")
        if self.sources is not None and len(self.sources) != len(self.base_names):
            raise DatasetError(
                f"{name}: {len(self.sources)} class sources but {len(self.base_names)} classes"
            )
        if len(set(self.base_names)) != len(self.base_names):
            raise DatasetError(f"{name}: class names repeat")
        if bool((sizes < 0).any()) or int(sizes.sum()) != len(self.images):
            raise DatasetError(
                f"{name}: class sizes sum to {int(sizes.sum())}, but there are {len(self.images)} items"
            )
        if rotations not in ROTATIONS:
            raise DatasetError(f"{name}: rotations must be one of {ROTATIONS}, got {rotations}")
        height, width = self.images.shape[-2:]
        if rotations == 4 and height != width:
            raise DatasetError(
                f"{name}: rotating by 90 degrees needs square images, these are {height}x{width}"
            )
        self.base_sizes = sizes
        self.base_starts = torch.cumsum(sizes, 0) - sizes

    @classmethod
    def from_labels(
        cls,
        images: Tensor | np.ndarray,
        labels: Sequence[int] | Tensor | np.ndarray,
        class_names: Sequence[str],
        name: str = "dataset",
        rotations: int = 1,
    ) -> ClassDataset:
        """Items in any order with one label (0..len(class_names)-1) each; reordered (stably) by class, which
        copies `images` into memory."""
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(labels) != len(images):
            raise DatasetError(f"{name}: {len(images)} items but {len(labels)} labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DatasetError(f"{name}: labels must lie in 0..{len(class_names) - 1}")
        order = torch.argsort(labels, stable=True)
        sizes = torch.bincount(labels, minlength=len(class_names)).tolist()
        return cls(_as_uint8_tensor(images, name)[order], sizes, class_names, name, rotations=rotations)

    def with_rotations(self, rotations: int) -> ClassDataset:
        """The same items (shared, not copied) with `rotations` variants per base class."""
        return ClassDataset(
            self.images, self.base_sizes.tolist(), self.base_names, self.name, self.sources, rotations
        )

    # -- classes ---------------------------------------------------------------------------------------
    @property
    def num_base_classes(self) -> int:
        """Classes on disk, before rotation."""
        return len(self.base_names)

    @property
    def num_classes(self) -> int:
        """Classes an episode draws from: base classes times `rotations`."""
        return len(self.base_names) * self.rotations

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of every item."""
        channels, height, width = self.images.shape[1:]
        return int(channels), int(height), int(width)

    def __len__(self) -> int:
        """Items over all classes, rotated copies included."""
        return len(self.images) * self.rotations

    def class_name(self, index: int) -> str:
        """`"<base name>"`, or `"<base name>@<degrees>"` for a rotated copy."""
        base, turn = divmod(index, self.rotations)
        degrees = turn * 360 // self.rotations
        return self.base_names[base] if degrees == 0 else f"{self.base_names[base]}@{degrees}"

    def class_size(self, index: int) -> int:
        return int(self.base_sizes[index // self.rotations])

    def class_source(self, index: int) -> str:
        """The file or folder the class comes from, else `"<class name> of <split>"`."""
        base = index // self.rotations
        if self.sources is not None:
            return self.sources[base]
        return f"class {self.base_names[base]!r} of {self.name}"

    def quarter_turns(self, classes: Tensor) -> Tensor:
        """Counter-clockwise quarter turns (0..3) applied to each class index in `classes`."""
        return (classes % self.rotations) * (4 // self.rotations)

    def item_index(self, classes: Tensor, within: Tensor) -> Tensor:
        """Row of `images` for item `within[i, j]` of class `classes[i]` (shapes `[N]` and `[N, M]`)."""
        return self.base_starts[classes // self.rotations].unsqueeze(1) + within

    def class_items(self, index: int) -> Tensor:
        """All uint8 items of one class (rotated), `(size, C, H, W)`."""
        base = index // self.rotations
        start = int(self.base_starts[base])
        items = self.images[start : start + int(self.base_sizes[base])]
        turns = int(self.quarter_turns(torch.tensor(index)))
        return torch.rot90(items, turns, dims=(-2, -1)) if turns else items

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"ClassDataset({self.name!r}: {self.num_base_classes} classes x{self.rotations} rotations, "
            f"{len(self.images)} items of {c}x{h}x{w})"
        )


def _as_uint8_tensor(images: Tensor | np.ndarray, name: str) -> Tensor:
    """`images` as a uint8 `(items, C, H, W)` tensor sharing its memory (a memmap stays a memmap)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise DatasetError(f"{name}: images must be uint8, got {images.dtype}")
        if not images.flags.writeable:  # torch refuses read-only arrays; a copy-on-write view is free
            raise DatasetError(f"{name}: open memory maps with mmap_mode='c' (copy-on-write), not read-only")
        images = torch.from_numpy(images)
    if images.dtype != torch.uint8:
        raise DatasetError(f"{name}: images must be uint8, got {images.dtype}")
    if images.dim() != 4:
        raise DatasetError(f"{name}: images must be (items, C, H, W), got shape {tuple(images.shape)}")
    return images
