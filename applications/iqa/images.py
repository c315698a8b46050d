"""Image access for IQA: decoded images cached as uint8 tensors, downscaling, crops and flips, ImageNet normalisation."""

from __future__ import annotations

import fcntl
import hashlib
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metalearn.checkpoint import atomic_write_bytes
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.model import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


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


RAM_BYTES = 2 * 1024**3
"""Default bound on the decoded images an in-RAM `ImageStore` holds (2 GiB)."""
DISK_BYTES = 32 * 1024**3
"""Default bound on an on-disk image cache (32 GiB: KonIQ-10k at 1024x768 takes 24 GB decoded)."""


class ImageStore:
    """Decoded images by path, each decoded once into a bounded cache (decoding dominates small models).

    In RAM (default): an LRU cache of at most `capacity` images and `max_bytes` bytes (default `RAM_BYTES`).
    With `cache_dir`: uint8 `.npy` files there, memory-mapped when read, shared by every process (the
    DataLoader workers of `workers`) and reused by later runs; at most `max_bytes` (default `DISK_BYTES`)
    are written, and images past the bound are decoded from their files each time (no churn: random crops
    of a database larger than the cache hit it as often under any eviction order).
    `workers` > 0 builds training batches in that many DataLoader worker processes (see `CropLoader`).
    """

    def __init__(
        self,
        capacity: int = 4096,
        max_bytes: int | None = None,
        cache_dir: str | Path | None = None,
        workers: int = 0,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be at least 0 images, got {capacity}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        if workers < 0:
            raise ValueError(f"workers must be at least 0, got {workers}")
        self.capacity = capacity
        self.disk = (
            DiskCache(cache_dir, DISK_BYTES if max_bytes is None else max_bytes) if cache_dir else None
        )
        self.max_bytes = RAM_BYTES if max_bytes is None else max_bytes
        self.workers = workers
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._bytes = 0
        self._shapes: dict[str, tuple[int, int]] = {}
        self._loader: Any = None

    @property
    def held(self) -> int:
        """How many decoded images the store holds in RAM now (not `__len__`: an empty store must stay truthy)."""
        return len(self._cache)

    @property
    def held_bytes(self) -> int:
        """Bytes of decoded images held: in RAM, or on disk with a `cache_dir`."""
        return self.disk.used() if self.disk else self._bytes

    @property
    def loader(self) -> Any:
        """The `CropLoader` building this store's training batches (created on first use)."""
        if self._loader is None:
            from metalearn_iqa.loader import CropLoader

            self._loader = CropLoader(self, self.workers)
        return self._loader

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_loader": None}  # worker processes build batches, they own no loader

    def shape(self, path: str) -> tuple[int, int]:
        """(height, width) of the decoded image, from the file's header when it is not decoded yet."""
        known = self._shapes.get(path)
        if known is None:
            cached = self._cache.get(path)
            known = tuple(cached.shape[-2:]) if cached is not None else image_shape(path)  # type: ignore[assignment]
            self._shapes[path] = known  # type: ignore[assignment]
        return known  # type: ignore[return-value]

    def __call__(self, path: str) -> Tensor:
        if self.disk is not None:
            return self.disk(path)
        image = self._cache.get(path)
        if image is not None:
            self._cache.move_to_end(path)
            return image
        image = read_image(path)
        size = image.numel()
        if self.capacity and size <= self.max_bytes:
            self._cache[path] = image
            self._bytes += size
            while len(self._cache) > self.capacity or self._bytes > self.max_bytes:
                self._bytes -= self._cache.popitem(last=False)[1].numel()
        return image


def image_shape(path: str) -> tuple[int, int]:
    """(height, width) that `read_image` will give, read from the header; a bad file: `read_image`'s error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.height, img.width
    except Exception:  # noqa: BLE001 - decoding names the problem in `read_image`'s words
        return tuple(read_image(path).shape[-2:])  # type: ignore[return-value]


class DiskCache:
    """Decoded uint8 images as `.npy` files in `folder`, at most `max_bytes` in all, shared by processes.

    A file is named by the image's path, size and modification time, so an edited image is decoded again;
    it is written to a temporary name and renamed, and admitted under a file lock that keeps the byte total
    (`ledger`) within the bound whatever the number of writers. Each process keeps up to `OPEN_MAPS` maps
    open, so within one run an image reads as it was when first read.
    """

    LEDGER = "bytes.txt"
    OPEN_MAPS = 1024
    """Memory maps each process keeps open (opening one costs more than cropping it)."""

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._maps: OrderedDict[str, Tensor] = OrderedDict()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{self.folder}: cannot create the image cache ({exc.strerror})") from None

    def _file(self, path: str) -> Path:
        stat = Path(path).stat()
        key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def used(self) -> int:
        """Bytes of decoded images written so far (the ledger)."""
        ledger = self.folder / self.LEDGER
        return int(ledger.read_text() or 0) if ledger.exists() else 0

    def __call__(self, path: str) -> Tensor:
        image = self._maps.get(path)
        if image is not None:
            self._maps.move_to_end(path)
            return image
        try:
            file = self._file(path)
        except FileNotFoundError:
            raise DatasetError(f"{path}: image not found") from None
        if not file.exists():
            image = read_image(path)
            if not self._admit(file, image):
                return image
        image = torch.from_numpy(np.load(file, mmap_mode="c"))  # copy-on-write: writable, read lazily
        self._maps[path] = image
        if len(self._maps) > self.OPEN_MAPS:
            self._maps.popitem(last=False)
        return image

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_maps": OrderedDict()}

    def _admit(self, file: Path, image: Tensor) -> bool:
        """Write `image` to `file` if the cache has room for it (checked and counted under the lock).

        True when `file` holds the image (written now or by another process meanwhile).
        """
        size = image.numel() + 128  # the .npy header
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = self.used()
            if file.exists():
                return True
            if used + size > self.max_bytes:
                return False
            atomic_write_bytes(
                file, lambda fh: np.save(fh, image.numpy()), sync=False
            )  # a cache: remade if lost
            total = str(used + file.stat().st_size).encode()
            atomic_write_bytes(self.folder / self.LEDGER, lambda fh: fh.write(total), sync=False)
        return True


def normalise(batch_uint8: Tensor, out: Tensor | None = None) -> Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet-normalised, in place on one float buffer (`out` if given)."""
    out = batch_uint8.float() if out is None else out.copy_(batch_uint8)
    return out.div_(255.0).sub_(_MEAN.to(out.device)).div_(_STD.to(out.device))


def downscaled_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The (height, width) `downscale` gives an image of `shape`."""
    h, w = shape
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def downscale(image: Tensor, max_side: int | None) -> Tensor:
    """Shrink (anti-aliased, aspect ratio kept) so the longest side is at most `max_side`; None or small: as is."""
    size = downscaled_shape(tuple(image.shape[-2:]), max_side)  # type: ignore[arg-type]
    if size == tuple(image.shape[-2:]):
        return image
    return TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def fit_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """The (height, width) `fit` gives an h x w image for crops of `size`."""
    if min(h, w) >= size:
        return h, w
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def fit(image: Tensor, size: int) -> Tensor:
    """Upscale (bilinear) an image whose shorter side is below `size`, so any crop fits."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    shape = fit_shape(h, w, size)
    out = F.interpolate(image[None].float(), size=shape, mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def random_crop(image: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A `size` x `size` crop at a position drawn from `generator`."""
    image = fit(image, size)
    top, left = crop_corner(image.shape[-2], image.shape[-1], size, generator)
    return image[:, top : top + size, left : left + size]


def crop_corner(h: int, w: int, size: int, generator: torch.Generator) -> tuple[int, int]:
    """The (top, left) corner of a `size` crop of an h x w image, uniform over the positions (two draws)."""
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return top, left


def centre_crop(image: Tensor, size: int) -> Tensor:
    """The central `size` x `size` crop (test time: deterministic, no rescaling that would alter distortions)."""
    image = fit(image, size)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top : top + size, left : left + size]


def five_crops(image: Tensor, size: int) -> list[Tensor]:
    """Four corner crops and the centre crop (test time, averaged for a steadier score)."""
    image = fit(image, size)
    h, w = image.shape[-2:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return [image[:, t : t + size, lft : lft + size] for t, lft in corners] + [centre_crop(image, size)]
