"""Unlabelled images for QPT, and the contrastive batches cut from them.

A batch (one `Task`; its support and query are the same batch, the query unused): `images_per_batch`
source images, each degraded `chains_per_image` times by independent random chains, and two random
`patch` x `patch` crops of every degraded image. Rows i and i + M of the batch are the two patches of
degraded image i (M = images x chains); `targets` holds each row's source image index. The degradation
runs on a random `region` x `region` crop of the source (at its own resolution: the distortions are
defined in pixels), so a large photo costs no more than a small one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalearn import Task
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.images.decode import IMAGE_SUFFIXES, image_files, read_image
from metalearn_iqa.images.transforms import normalise
from metalearn_iqa.qpt.degradations import DegradationConfig, apply_chain, sample_chain


@dataclass(frozen=True)
class BatchConfig:
    """How one contrastive batch is cut (see the module docstring)."""

    images_per_batch: int = 4
    chains_per_image: int = 2
    patch: int = 64
    region: int = 128

    def __post_init__(self) -> None:
        if self.images_per_batch < 1 or self.chains_per_image < 1:
            raise ValueError("images_per_batch and chains_per_image must be at least 1")
        if self.images_per_batch * self.chains_per_image < 2:
            raise ValueError("a batch needs at least 2 degraded images (one to be a negative)")
        if self.patch < 32 or self.region < self.patch:
            raise ValueError(f"need 32 <= patch <= region, got patch {self.patch}, region {self.region}")

    @property
    def patches(self) -> int:
        """Patches per batch (forward+backward passes of one image each)."""
        return 2 * self.images_per_batch * self.chains_per_image


def folder_images(folder: str | Path) -> list[Path]:
    """Every image file below `folder`, sorted (a folder with none is a one-line error)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of images")
    paths = image_files(folder)
    if not paths:
        raise DatasetError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def load_images(paths: Sequence[str | Path], min_side: int = 32) -> list[np.ndarray]:
    """Decode images to float32 H x W x 3 arrays in [0, 1]; an unreadable or tiny image names itself."""
    images = []
    for path in paths:
        array = read_image(path).permute(1, 2, 0).numpy().astype(np.float32) / 255.0
        if min(array.shape[:2]) < min_side:
            raise DatasetError(f"{path}: {array.shape[1]}x{array.shape[0]} pixels, under {min_side} a side")
        images.append(array)
    return images


def reference_images(size: int = 128) -> list[np.ndarray]:
    """The embedded database's 48 reference photos (tiles of scikit-image photos), the default QPT data."""
    from metalearn_iqa.data.synthetic import DEFAULT_REFERENCES, reference_image

    return [reference_image(name, size) for name in DEFAULT_REFERENCES]


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop (the whole side where the image is smaller)."""
    h, w = image.shape[:2]
    top = int(rng.integers(0, max(0, h - size) + 1))
    left = int(rng.integers(0, max(0, w - size) + 1))
    return image[top : top + size, left : left + size]


def _to_tensor(patch: np.ndarray) -> Tensor:
    uint8 = torch.from_numpy(np.round(patch * 255.0).astype(np.uint8)).permute(2, 0, 1)
    return normalise(uint8[None])[0]


class ContrastiveSampler:
    """Draws contrastive batches (`Task`s) from unlabelled `images`, all randomness from the generator."""

    def __init__(self, images: Sequence[np.ndarray], batch: BatchConfig, degradations: DegradationConfig):
        if len(images) < 1:
            raise DatasetError("QPT needs at least one image")
        small = [i for i, x in enumerate(images) if min(x.shape[:2]) < batch.patch]
        if small:
            raise DatasetError(f"image {small[0]} is smaller than the {batch.patch}-pixel patch")
        self.images = list(images)
        self.batch = batch
        self.degradations = degradations

    def draw(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One batch: views (2M, 3, patch, patch), ImageNet-normalised, and each row's source index."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        b = self.batch
        replace = b.images_per_batch > len(self.images)
        sources = rng.choice(len(self.images), size=b.images_per_batch, replace=replace)
        first, second, owner = [], [], []
        for source in sources:
            region = _crop(self.images[int(source)], b.region, rng)
            if rng.random() < 0.5:
                region = np.ascontiguousarray(region[:, ::-1])
            for _ in range(b.chains_per_image):
                degraded = apply_chain(region, sample_chain(rng, self.degradations), rng)
                first.append(_to_tensor(_crop(degraded, b.patch, rng)))
                second.append(_to_tensor(_crop(degraded, b.patch, rng)))
                owner.append(int(source))
        views = torch.stack(first + second)
        return views, torch.tensor(owner + owner, dtype=torch.long)

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks = []
        for _ in range(n):
            batch = self.draw(generator)
            tasks.append(Task(support=batch, query=batch, name="qpt"))
        return tasks
