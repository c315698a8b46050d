"""CIFAR-FS (Bertinetto et al., ICLR 2019): CIFAR-100's 100 classes split 64 / 16 / 20, 600 images each.

Layout (the common release): `cifar100/data/<class name>/*.png` and
`cifar100/splits/bertinetto/{train,val,test}.txt`, one class name per line; `root` is the folder holding
`cifar100/` or `cifar100/` itself. Images are 32x32 RGB; other sizes are resized by the rules of `_images`
(Lanczos). Classes keep the split file's order; a class's images are sorted by file name.
"""

from __future__ import annotations

from pathlib import Path

from metalearn.episodes import ClassDataset, DatasetError
from metalearn_fewshot.data._images import FILTER_NAME, decode_all, image_files, require_folder, resolve_root
from metalearn_fewshot.data.cache import CacheOption, Decoded, cache_folder, file_signature, load_cached

NAME = "cifar-fs"
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 32


def cifarfs_base(root: str | Path | None) -> Path:
    """The `cifar100` folder: `root/cifar100`, or `root` itself when it holds `data/` and `splits/`."""
    base = resolve_root(root, "CIFAR-FS")
    return base if (base / "data").is_dir() and (base / "splits").is_dir() else base / "cifar100"


def split_classes(root: str | Path | None, split: str) -> list[tuple[str, Path, list[Path]]]:
    """`(class name, folder, images)` for each class the split file lists; missing or empty ones refused."""
    if split not in SPLITS:
        raise DatasetError(f"cifar-fs: unknown split {split!r}; choose from {', '.join(SPLITS)}")
    base = cifarfs_base(root)
    split_file = base / "splits" / "bertinetto" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{split_file}: CIFAR-FS split file not found")
    try:
        names = [
            line.strip() for line in split_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()
        ]
    except UnicodeDecodeError:
        raise DatasetError(f"{split_file}: not a UTF-8 text file") from None
    if not names:
        raise DatasetError(f"{split_file}: lists no classes")
    if len(set(names)) != len(names):
        raise DatasetError(
            f"{split_file}: class {next(n for n in names if names.count(n) > 1)!r} listed twice"
        )
    data = require_folder(base / "data", "CIFAR-FS image folder")
    classes = []
    for name in names:
        folder = data / name
        if not folder.is_dir():
            raise DatasetError(f"{folder}: class folder listed in {split_file.name} not found")
        files = image_files(folder)
        if not files:
            raise DatasetError(f"{folder}: class folder holds no images")
        classes.append((name, folder, files))
    return classes


def load_cifarfs(
    root: str | Path | None,
    split: str,
    image_size: int = IMAGE_SIZE,
    rotations: int = 1,
    cache: CacheOption = True,
) -> ClassDataset:
    """One split as a `ClassDataset` named `cifar-fs/<split>`: uint8 `(items, 3, size, size)`."""
    classes = split_classes(root, split)
    base = cifarfs_base(root)
    files = [f for _, _, fs in classes for f in fs]

    def build() -> Decoded:
        return Decoded(
            decode_all(files, image_size, "RGB"),
            [len(fs) for _, _, fs in classes],
            [name for name, _, _ in classes],
            [str(folder) for _, folder, _ in classes],
        )

    split_file = base / "splits" / "bertinetto" / f"{split}.txt"
    signature = [image_size, FILTER_NAME, file_signature([split_file, *files], base)]
    key = f"cifar-fs-{split}-{image_size}"
    return load_cached(cache_folder(cache, base), key, signature, build, f"{NAME}/{split}", rotations)


def count_cifarfs(root: str | Path | None) -> dict[str, tuple[int, int]]:
    """`{split: (classes, images)}` for every split whose split file is present (no decoding)."""
    base = cifarfs_base(root)
    present = [s for s in SPLITS if (base / "splits" / "bertinetto" / f"{s}.txt").is_file()]
    if not present:
        raise DatasetError(f"{base / 'splits' / 'bertinetto' / 'train.txt'}: CIFAR-FS split file not found")
    counts = {}
    for split in present:
        classes = split_classes(base, split)
        counts[split] = (len(classes), sum(len(fs) for _, _, fs in classes))
    return counts
