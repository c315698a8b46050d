"""Decoded splits cached as `.npy` files, memory-mapped on later loads, remade when the source changes.

A split is cached as two files named by its key and a hash of its signature (what it was built from):
`<cache>/<key>.<hash>.npy` (uint8 `(items, C, H, W)`, classes contiguous) and `<cache>/<key>.<hash>.json`
(class names, sizes, sources, signature). The signature holds the loader's settings (image size, filter,
format version) and every source file's relative path, size and modification time, so adding, removing
or editing a file gives a new hash and the split is decoded again; older files of the same key are deleted
then. Both files are written to temporary names and renamed (the `.json` last), so a reader sees a whole
cache entry or none, even when two processes build the same split at once.

Where: `cache=True` means `<root>/.metalearn-cache/` next to the data, or, when that folder cannot be
created (a read-only copy), `$METALEARN_CACHE/fewshot/` (default `~/.cache/metalearn/fewshot/`) under a
name made from the root's path; a path means that folder; `False` or `None`, no cache (decoded in RAM).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalearn.checkpoint import atomic_write_bytes
from metalearn.episodes import ClassDataset, DatasetError

CacheOption = bool | str | Path | None
"""`True` (next to the data, else the user cache), a folder, or `False`/`None` (no cache)."""

FORMAT = 1
"""Bumped when the cache layout or a decoding rule changes: every older entry is then rebuilt."""
CACHE_DIRNAME = ".metalearn-cache"


@dataclass
class Decoded:
    """A split as a loader decodes it: uint8 `(items, C, H, W)` grouped by class, and per-class lists."""

    images: np.ndarray
    class_sizes: list[int]
    class_names: list[str]
    sources: list[str] | None = None


def user_cache_dir() -> Path:
    """`$METALEARN_CACHE/fewshot`, else `$XDG_CACHE_HOME/metalearn/fewshot` (`~/.cache/...`)."""
    if "METALEARN_CACHE" in os.environ:
        return Path(os.environ["METALEARN_CACHE"]) / "fewshot"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metalearn" / "fewshot"


def cache_folder(cache: CacheOption, root: Path | None) -> Path | None:
    """The folder `cache` names for data under `root` (None: no cache). Creates it."""
    if cache is None or cache is False:
        return None
    if cache is True:
        if root is not None:
            beside = root / CACHE_DIRNAME
            try:
                beside.mkdir(exist_ok=True)
                if os.access(beside, os.W_OK):
                    return beside
            except OSError:
                pass
            tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
            folder = user_cache_dir() / f"{root.name}-{tag}"
        else:
            folder = user_cache_dir()
    else:
        folder = Path(os.path.expanduser(str(cache)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot create the dataset cache ({exc.strerror})") from None
    return folder


def file_signature(files: Sequence[Path], base: Path) -> list[tuple[str, int, int]]:
    """`(path relative to base, size, mtime in ns)` of each file, in the order given."""
    out = []
    for path in files:
        stat = path.stat()
        out.append((os.path.relpath(path, base), stat.st_size, stat.st_mtime_ns))
    return out


def load_cached(
    folder: Path | None,
    key: str,
    signature: object,
    build: Callable[[], Decoded],
    name: str,
    rotations: int = 1,
) -> ClassDataset:
    """The split `key` from `folder` when its signature matches, else `build()` it (and cache it there)."""
    if folder is None:
        return _dataset(build(), name, rotations)
    digest = hashlib.sha256(json.dumps([FORMAT, signature], default=str).encode()).hexdigest()[:16]
    array_file, meta_file = folder / f"{key}.{digest}.npy", folder / f"{key}.{digest}.json"
    meta = _read_meta(meta_file)
    if meta is not None and array_file.is_file():
        try:
            images = np.load(array_file, mmap_mode="c")  # copy-on-write: torch may wrap it, pages read lazily
        except (OSError, ValueError):
            images = None  # a damaged entry: decode again below
        if images is not None and images.shape[0] == sum(meta["class_sizes"]):
            return _dataset(
                Decoded(images, meta["class_sizes"], meta["class_names"], meta.get("sources")),
                name,
                rotations,
            )
    decoded = build()
    _write(folder, key, array_file, meta_file, decoded)
    return _dataset(decoded, name, rotations)


def _dataset(decoded: Decoded, name: str, rotations: int) -> ClassDataset:
    images = decoded.images
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()
    return ClassDataset(images, decoded.class_sizes, decoded.class_names, name, decoded.sources, rotations)


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and {"class_sizes", "class_names"} <= meta.keys() else None


def _write(folder: Path, key: str, array_file: Path, meta_file: Path, decoded: Decoded) -> None:
    """Write both files atomically (array first, its description last), then drop stale entries of `key`."""
    meta = {
        "format": FORMAT,
        "shape": list(decoded.images.shape),
        "class_sizes": [int(s) for s in decoded.class_sizes],
        "class_names": decoded.class_names,
        "sources": decoded.sources,
    }
    try:
        atomic_write_bytes(
            array_file, lambda fh: np.save(fh, np.ascontiguousarray(decoded.images)), sync=False
        )
        atomic_write_bytes(meta_file, lambda fh: fh.write(json.dumps(meta).encode()), sync=False)
    except OSError as exc:
        raise DatasetError(f"{array_file}: cannot write the dataset cache ({exc.strerror})") from None
    for stale in folder.glob(f"{key}.*"):
        if stale.suffix in (".npy", ".json") and stale not in (array_file, meta_file):
            stale.unlink(missing_ok=True)
