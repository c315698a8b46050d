"""Decoded images by path, each decoded once: in a bounded RAM cache, or in a shared on-disk cache."""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metalearn.checkpoint import atomic_write_bytes
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.images.decode import image_shape, read_image

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
            from metalearn_iqa.images.loader import CropLoader

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


_SHAPE = re.compile(rb"'shape': \(([0-9, ]*)\)")


def map_uint8_npy(file: Path) -> np.ndarray:
    """Memory-map (copy-on-write: writable, read lazily) a uint8 C-order `.npy` file written by `np.save`.

    The header is parsed here rather than by `np.load`, whose `ast.literal_eval` is not safe in a process
    forked while another thread was compiling (CPython 3.11 < 3.11.8 keeps the parser's recursion depth in
    global state: "AST constructor recursion depth mismatch" in DataLoader workers).
    """
    with open(file, "rb") as handle:
        prefix = handle.read(10)
        if prefix[:6] != b"\x93NUMPY" or prefix[6] not in (1, 2, 3):
            raise DatasetError(f"{file}: not a .npy file (a damaged image cache entry; delete it)")
        if prefix[6] == 1:
            length, start = int.from_bytes(prefix[8:10], "little"), 10
        else:
            length, start = int.from_bytes(prefix[8:10] + handle.read(2), "little"), 12
        header = handle.read(length)
    shape = _SHAPE.search(header)
    if b"'|u1'" not in header or b"'fortran_order': False" not in header or shape is None:
        raise DatasetError(f"{file}: not a uint8 C-order .npy file (a damaged image cache entry; delete it)")
    dims = tuple(int(d) for d in shape.group(1).replace(b" ", b"").split(b",") if d)
    return np.memmap(file, dtype=np.uint8, mode="c", offset=start + length, shape=dims)


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
        image = torch.from_numpy(map_uint8_npy(file))
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
