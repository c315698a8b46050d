"""mini-ImageNet (Vinyals et al. 2016) in the split of Ravi & Larochelle (2017): 64 / 16 / 20 classes.

Two layouts under `root`, read as their publishers write them:

- Ravi & Larochelle's csv files: `train.csv`, `val.csv`, `test.csv` (header `filename,label`, the label a
  WordNet id) and `images/` holding the listed files (`n0153282900000005.jpg`). Copies differ in image
  size (full ImageNet crops or 84x84): every image is EXIF-transposed, converted to RGB and resized to
  `image_size` x `image_size` (default 84) with Pillow's Lanczos filter (see `_images`).
- learn2learn's pickles: `mini-imagenet-cache-train.pkl`, `mini-imagenet-cache-val.pkl` (some copies:
  `-validation.pkl`), `mini-imagenet-cache-test.pkl`, each a dict with `image_data` (N x 84 x 84 x 3 uint8)
  and `class_dict` ({wnid: [row numbers]}). Used when present (no decoding needed).

A pickle can run arbitrary code while it loads: only read files from a source you trust. These are read
with an unpickler that admits nothing but numpy arrays, dicts, lists, strings and numbers (any other
global is refused, naming the file), which blocks the usual attacks but is no substitute for trust.

Classes are sorted by WordNet id; a class's images keep the order of the csv rows or pickle rows.
"""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from metalearn.episodes import ClassDataset, DatasetError
from metalearn_fewshot.data._images import FILTER, FILTER_NAME, decode_all, require_folder, resolve_root
from metalearn_fewshot.data.cache import CacheOption, Decoded, cache_folder, file_signature, load_cached

NAME = "mini-imagenet"
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 84
PICKLE_NAMES = {
    "train": ("mini-imagenet-cache-train.pkl",),
    "val": ("mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"),
    "test": ("mini-imagenet-cache-test.pkl",),
}
_ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _split_name(split: str) -> str:
    split = "val" if split == "validation" else split
    if split not in SPLITS:
        raise DatasetError(f"mini-imagenet: unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def _pickle_file(base: Path, split: str) -> Path | None:
    return next((base / n for n in PICKLE_NAMES[split] if (base / n).is_file()), None)


def read_pickle(path: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
    """`(image_data, class_dict)` of a learn2learn pickle, checked; any problem is a `DatasetError`."""
    try:
        with open(path, "rb") as fh:
            data = _ArrayUnpickler(fh, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
    ) as exc:
        raise DatasetError(f"{path}: not a readable mini-ImageNet pickle ({exc})") from None
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= data.keys():
        raise DatasetError(f"{path}: expected a dict with 'image_data' and 'class_dict'")
    images, classes = data["image_data"], data["class_dict"]
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[3] != 3
    ):
        raise DatasetError(f"{path}: 'image_data' must be an N x H x W x 3 uint8 array")
    if not isinstance(classes, dict) or not classes:
        raise DatasetError(f"{path}: 'class_dict' must be a non-empty {{class: [rows]}} dict")
    seen: set[int] = set()
    rows_of: dict[str, list[int]] = {}
    for wnid in sorted(classes, key=str):
        rows = [int(r) for r in classes[wnid]]
        if not rows:
            raise DatasetError(f"{path}: class {wnid} has no images")
        bad = [r for r in rows if not 0 <= r < len(images)]
        if bad:
            raise DatasetError(f"{path}: class {wnid} lists row {bad[0]}, outside 0..{len(images) - 1}")
        if seen & set(rows):
            raise DatasetError(f"{path}: row {min(seen & set(rows))} belongs to two classes")
        seen.update(rows)
        rows_of[str(wnid)] = rows
    return images, rows_of


def read_csv(path: Path) -> dict[str, list[str]]:
    """`{wnid: [file names]}` of a Ravi & Larochelle csv file, classes sorted."""
    classes: dict[str, list[str]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["filename", "label"]:
                raise DatasetError(f"{path}: expected the header 'filename,label', got {header}")
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    raise DatasetError(f"{path}:{line}: expected 'filename,label', got {','.join(row)!r}")
                classes.setdefault(row[1].strip(), []).append(row[0].strip())
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    if not classes:
        raise DatasetError(f"{path}: no images listed")
    return dict(sorted(classes.items()))


def _csv_files(base: Path, split: str) -> tuple[dict[str, list[str]], list[Path]]:
    """A csv split's classes and the image files it lists, each checked to exist on disk."""
    listing = read_csv(base / f"{split}.csv")
    folder = require_folder(base / "images", "mini-ImageNet image folder")
    present = {entry.name for entry in os.scandir(folder)}
    files = []
    for names in listing.values():
        for name in names:
            if name not in present:
                raise DatasetError(f"{folder / name}: image listed in {split}.csv not found")
            files.append(folder / name)
    return listing, files


def load_miniimagenet(
    root: str | Path | None,
    split: str,
    image_size: int = IMAGE_SIZE,
    rotations: int = 1,
    cache: CacheOption = True,
) -> ClassDataset:
    """One split as a `ClassDataset` named `mini-imagenet/<split>`: uint8 `(items, 3, size, size)`."""
    base, split = resolve_root(root, "mini-ImageNet"), _split_name(split)
    name, folder = f"{NAME}/{split}", cache_folder(cache, base)
    key = f"mini-imagenet-{split}-{image_size}"
    source = _pickle_file(base, split)
    if source is not None:
        pickled = source

        def from_pickle() -> Decoded:
            images, rows_of = read_pickle(pickled)
            order = np.concatenate([np.asarray(r) for r in rows_of.values()])
            array = _resized(images[order], image_size)
            return Decoded(
                array, [len(r) for r in rows_of.values()], list(rows_of), [str(pickled)] * len(rows_of)
            )

        signature = [image_size, FILTER_NAME, file_signature([source], base)]
        return load_cached(folder, key, signature, from_pickle, name, rotations)
    if not (base / f"{split}.csv").is_file():
        raise DatasetError(
            f"{base / f'{split}.csv'}: mini-ImageNet split file not found (nor {PICKLE_NAMES[split][0]})"
        )
    listing, files = _csv_files(base, split)

    def from_csv() -> Decoded:
        images = decode_all(files, image_size, "RGB")
        return Decoded(
            images,
            [len(v) for v in listing.values()],
            list(listing),
            [str(base / f"{split}.csv")] * len(listing),
        )

    signature = [image_size, FILTER_NAME, file_signature([base / f"{split}.csv", *files], base)]
    return load_cached(folder, key, signature, from_csv, name, rotations)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """N x H x W x 3 uint8 to N x 3 x size x size (Lanczos, as the csv path) ."""
    if images.shape[1:3] != (size, size):
        images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), FILTER)) for im in images])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def count_miniimagenet(root: str | Path | None, cache: CacheOption = True) -> dict[str, tuple[int, int]]:
    """`{split: (classes, images)}` for every split present (csv: no decoding; pickle: loaded once, cached)."""
    base = resolve_root(root, "mini-ImageNet")
    counts = {}
    for split in SPLITS:
        if _pickle_file(base, split) is not None:
            data = load_miniimagenet(base, split, cache=cache)
            counts[split] = (data.num_base_classes, len(data.images))
        elif (base / f"{split}.csv").is_file():
            listing = read_csv(base / f"{split}.csv")
            counts[split] = (len(listing), sum(len(v) for v in listing.values()))
    if not counts:
        raise DatasetError(f"{base}: no mini-ImageNet split found (train.csv or {PICKLE_NAMES['train'][0]})")
    return counts
