"""Image access for IQA: decoded images cached as uint8 tensors, downscaling, crops and flips, ImageNet normalisation."""

from __future__ import annotations

import re
import warnings
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
    """Decode an image file to a uint8 RGB tensor (3, H, W) by `to_rgb`, for training and prediction alike.

    Unreadable files, and images past Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, where
    Pillow would only warn), raise a one-line DatasetError naming the file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                array = torch.from_numpy(np.array(to_rgb(img)))
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow: "Image size (N pixels) exceeds limit ..."
        size = f"{found[1]} pixels; " if found else ""
        raise DatasetError(
            f"{path}: too large to decode safely ({size}PIL.Image.MAX_IMAGE_PIXELS is {Image.MAX_IMAGE_PIXELS})"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc.__class__.__name__})") from None
    return array.permute(2, 0, 1).contiguous()


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow image as uint8 RGB (H, W, 3), by one rule (`convert("RGB")` clips 16-bit images to white).

    - 16-bit grey (I;16, I;16B, I;16L, I;16N): value / 257, so 0..65535 maps onto 0..255.
    - I (32-bit integers): as 16-bit when every value is at most 65535 (how many 16-bit files open), else
      scaled so the maximum is 255.
    - F (32-bit floats): 0..1 when the maximum is at most 1, else scaled so the maximum is 255.
    - In all three, negatives clip to 0, NaN and infinities read 0, and the grey level fills R, G and B.
    - Transparency (RGBA, LA, PA, or P, L, RGB with a transparent colour): composited on white, as a page
      would show the image; transparent pixels' hidden colours never reach the model.
    - Every other mode (L, 1, P, CMYK, YCbCr, ...): Pillow's conversion to RGB.
    """
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        grey = _grey_to_uint8(np.asarray(img), img.mode)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """One high-depth grey channel on 0..255 by `to_rgb`'s rule for `mode`."""
    values = values.astype(np.float64)
    values[~np.isfinite(values)] = 0.0
    top = float(values.max(initial=0.0))
    if mode.startswith("I;16") or (mode == "I" and top <= 65535):
        scale = 255.0 / 65535.0
    elif mode == "F" and top <= 1.0:
        scale = 255.0
    else:
        scale = 255.0 / top
    return np.clip(np.round(values * scale), 0, 255).astype(np.uint8)


class ImageStore:
    """Decoded images by path, kept in an LRU cache of `capacity` images (decoding dominates small models)."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be at least 0 images, got {capacity}")
        self.capacity = capacity
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def held(self) -> int:
        """How many decoded images the store holds now (not `__len__`: an empty store must stay truthy)."""
        return len(self._cache)

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
