"""Image files to pixels: which files are images, and decoding any of them to uint8 RGB by one rule."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metalearn_iqa.data.records import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
"""What counts as an image when a folder is searched."""


def image_files(folder: Path) -> list[Path]:
    """Every entry below `folder` with an image suffix, sorted (a folder so named fails later, by name)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


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


def image_shape(path: str) -> tuple[int, int]:
    """(height, width) that `read_image` will give, read from the header; a bad file: `read_image`'s error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.height, img.width
    except Exception:  # noqa: BLE001 - decoding names the problem in `read_image`'s words
        return tuple(read_image(path).shape[-2:])  # type: ignore[return-value]
