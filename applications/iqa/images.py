"""Image access for IQA: decoded images cached as uint8 tensors, downscaling, crops and flips, ImageNet normalisation."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.model import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def read_image(path: str | Path) -> Tensor:
    """Decode an image file to a uint8 RGB tensor (3, H, W); unreadable files raise a one-line DatasetError."""
    try:
        with Image.open(path) as img:
            array = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc.__class__.__name__})") from None
    return array.permute(2, 0, 1).contiguous()


class ImageStore:
    """Decoded images by path, kept in an LRU cache of `capacity` images (decoding dominates small models)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def __call__(self, path: str) -> Tensor:
        image = self._cache.get(path)
        if image is None:
            image = read_image(path)
            self._cache[path] = image
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(path)
        return image


def normalise(batch_uint8: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet-normalised."""
    return (batch_uint8.float() / 255.0 - _MEAN) / _STD


def downscale(image: Tensor, max_side: int | None) -> Tensor:
    """Shrink (anti-aliased, aspect ratio kept) so the longest side is at most `max_side`; None or small: as is."""
    h, w = image.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    return TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def random_flip(image: Tensor, generator: torch.Generator) -> Tensor:
    """The image mirrored left-right with probability 1/2 (quality does not depend on handedness)."""
    return image.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else image


def _fit(image: Tensor, size: int) -> Tensor:
    """Upscale (bilinear) an image whose shorter side is below `size`, so any crop fits."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    shape = (max(size, round(h * scale)), max(size, round(w * scale)))
    out = F.interpolate(image[None].float(), size=shape, mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def random_crop(image: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A `size` x `size` crop at a position drawn from `generator`."""
    image = _fit(image, size)
    h, w = image.shape[-2:]
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return image[:, top : top + size, left : left + size]


def centre_crop(image: Tensor, size: int) -> Tensor:
    """The central `size` x `size` crop (test time: deterministic, no rescaling that would alter distortions)."""
    image = _fit(image, size)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top : top + size, left : left + size]


def five_crops(image: Tensor, size: int) -> list[Tensor]:
    """Four corner crops and the centre crop (test time, averaged for a steadier score)."""
    image = _fit(image, size)
    h, w = image.shape[-2:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return [image[:, t : t + size, lft : lft + size] for t, lft in corners] + [centre_crop(image, size)]
