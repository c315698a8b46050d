"""Image decoding for the few-shot loaders: one file to a uint8 `(C, size, size)` array, many in threads.

Rules (the same for every dataset): EXIF orientation applied (`ImageOps.exif_transpose`); converted to
"L" (grayscale, 1 channel) or "RGB" by Pillow (a 1-bit image becomes 0/255); resized to `size` x `size`
with Pillow's Lanczos filter (what MAML's and Ravi & Larochelle's preprocessing scripts use), the aspect
ratio not kept, as those scripts do; images already of that size are left as they are. JPEGs larger than
twice the target are first reduced by the decoder itself (`Image.draft`, by 1/2, 1/4 or 1/8, never below
the target), which makes full-size ImageNet crops several times faster to read. Any file Pillow cannot
read, or larger than its decompression-bomb limit, is a one-line `DatasetError` naming it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from metalearn.episodes import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
FILTER = Image.Resampling.LANCZOS
FILTER_NAME = "lanczos"


def is_image(path: Path) -> bool:
    """An image file by its suffix (case-insensitive), hidden files excluded."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def decode(path: str | Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 `(C, size, size)`, `mode` "L" (C = 1) or "RGB" (C = 3), by the module's rules."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG" and min(img.size) >= 2 * size:
                    img.draft(mode, (size, size))
                img = ImageOps.exif_transpose(img)
                img = img.convert(mode)
                if img.size != (size, size):
                    img = img.resize((size, size), FILTER)
                array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(f"{path}: too large to decode safely (over PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc.__class__.__name__})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_all(paths: Sequence[str | Path], size: int, mode: str, workers: int | None = None) -> np.ndarray:
    """Every image of `paths`, in order, as uint8 `(len(paths), C, size, size)`; Pillow decodes outside the
    GIL, so `workers` threads (default: the CPUs this process may use, at most 8) share the work. The first
    bad file in the list order is the one reported."""
    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    workers = workers or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    def one(i: int) -> None:
        out[i] = decode(paths[i], size, mode)

    if workers <= 1 or len(paths) < 64:
        for i in range(len(paths)):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(one, range(len(paths)), chunksize=64):
                pass
    return out


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def require_folder(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a `DatasetError` naming it."""
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found")
    return path


def resolve_root(root: str | Path | None, dataset: str) -> Path:
    """The dataset root as an absolute path; a missing folder is a `DatasetError` naming it."""
    if root is None:
        raise DatasetError(f"{dataset}: give the folder that holds the dataset (root)")
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    return require_folder(path, f"{dataset} root folder")
