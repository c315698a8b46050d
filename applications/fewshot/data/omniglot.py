"""Omniglot (Lake et al., Science 2015) as its authors release it, in Lake's split or a Vinyals-style one.

Layout under `root` (or `root/omniglot-py`, where torchvision puts it):
`images_background/<Alphabet>/character<NN>/<IIII>_<DD>.png` (30 alphabets, 964 characters) and
`images_evaluation/...` (20 alphabets, 659 characters), 20 drawings per character, 105x105 1-bit PNGs with
black strokes on white. A class is one character, named `<Alphabet>/character<NN>`.

Splits:
- `background`, `evaluation`: Lake's two folders as they are.
- `train`, `val`, `test` (and `trainval` = train + val): the Vinyals et al. (2016) protocol of 1,200
  training and 423 test characters, with TorchMeta's 172 validation characters carved from the 1,200
  (1,028 / 172 / 423). Both folders are pooled, the characters sorted by name and shuffled by
  `numpy.random.default_rng(VINYALS_SEED).permutation`; the first 1,028 are `train`, the next 172 `val`,
  the last 423 `test`. Any copy of the full release gives the same membership (MAML's and TorchMeta's
  own shuffles differ from each other and from this one: no two codebases share a split). With fewer
  characters on disk the three parts keep the same proportions.

Images: converted to grayscale (1-bit to 0/255), resized to `image_size` (default 28) with Pillow's Lanczos
filter (as MAML's preprocessing), then inverted so strokes are bright on a dark background (ink 255,
paper 0), the convention of MAML's code (`1 - x`). Rotations by 90, 180 and 270 degrees as new classes are
the caller's option (`rotations=4`), applied at sampling time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalearn.episodes import ClassDataset, DatasetError
from metalearn_fewshot.data._images import (
    FILTER_NAME,
    decode_all,
    image_files,
    require_folder,
    resolve_root,
    subfolders,
)
from metalearn_fewshot.data.cache import CacheOption, Decoded, cache_folder, file_signature, load_cached

NAME = "omniglot"
FOLDERS = {"background": "images_background", "evaluation": "images_evaluation"}
VINYALS_SPLITS = ("train", "val", "test", "trainval")
SPLITS = (*FOLDERS, *VINYALS_SPLITS)
VINYALS_SEED = 1623
VINYALS_COUNTS = (1028, 172, 423)  # train, val, test of the 1,623 characters
IMAGE_SIZE = 28


@dataclass(frozen=True)
class Character:
    """One class: its name (`<Alphabet>/character<NN>`), folder and drawings (sorted)."""

    name: str
    folder: Path
    files: tuple[Path, ...]


def omniglot_base(root: str | Path | None) -> Path:
    """The folder holding `images_background/` and `images_evaluation/`: `root` or `root/omniglot-py`."""
    base = resolve_root(root, "Omniglot")
    nested = base / "omniglot-py"
    if not any((base / f).is_dir() for f in FOLDERS.values()) and nested.is_dir():
        return nested
    return base


def folder_characters(base: Path, folder: str) -> list[Character]:
    """Every character of one release folder, sorted by name; empty alphabets or characters refused."""
    top = require_folder(base / folder, "Omniglot folder")
    characters = []
    for alphabet in subfolders(top):
        folders = subfolders(alphabet)
        if not folders:
            raise DatasetError(f"{alphabet}: alphabet folder holds no character folders")
        for character in folders:
            files = image_files(character)
            if not files:
                raise DatasetError(f"{character}: character folder holds no images")
            characters.append(Character(f"{alphabet.name}/{character.name}", character, tuple(files)))
    if not characters:
        raise DatasetError(f"{top}: Omniglot folder holds no alphabet folders")
    return characters


def vinyals_parts(total: int) -> tuple[int, int, int]:
    """(train, val, test) character counts: 1,028 / 172 / 423 of 1,623, in proportion for other totals."""
    test = round(total * VINYALS_COUNTS[2] / sum(VINYALS_COUNTS))
    val = round(total * VINYALS_COUNTS[1] / sum(VINYALS_COUNTS))
    return total - val - test, val, test


def split_characters(root: str | Path | None, split: str) -> list[Character]:
    """The characters (classes) of `split`, sorted by name, before any rotation."""
    if split not in SPLITS:
        raise DatasetError(f"omniglot: unknown split {split!r}; choose from {', '.join(SPLITS)}")
    base = omniglot_base(root)
    if split in FOLDERS:
        return folder_characters(base, FOLDERS[split])
    listed = {s: folder_characters(base, f) for s, f in FOLDERS.items()}
    return vinyals_split(base, listed["background"] + listed["evaluation"], split)


def vinyals_split(base: Path, characters: list[Character], split: str) -> list[Character]:
    """`split` (train, val, test or trainval) of all characters by the module's recipe, sorted by name."""
    pooled = sorted(characters, key=lambda c: c.name)
    names = [c.name for c in pooled]
    repeated = sorted({a for a, b in zip(names, names[1:]) if a == b})
    if repeated:
        raise DatasetError(
            f"{base}: character {repeated[0]} is in both {FOLDERS['background']} and {FOLDERS['evaluation']}"
        )
    order = np.random.default_rng(VINYALS_SEED).permutation(len(pooled))
    train, val, _ = vinyals_parts(len(pooled))
    bounds = {
        "train": (0, train),
        "val": (train, train + val),
        "test": (train + val, len(pooled)),
        "trainval": (0, train + val),
    }
    start, stop = bounds[split]
    return sorted((pooled[i] for i in order[start:stop]), key=lambda c: c.name)


def load_omniglot(
    root: str | Path | None,
    split: str,
    image_size: int = IMAGE_SIZE,
    rotations: int = 1,
    cache: CacheOption = True,
) -> ClassDataset:
    """One split as a `ClassDataset` named `omniglot/<split>`: uint8 `(items, 1, size, size)`, ink 255."""
    characters = split_characters(root, split)
    base = omniglot_base(root)
    files = [f for c in characters for f in c.files]

    def build() -> Decoded:
        images = 255 - decode_all(files, image_size, "L")
        return Decoded(
            images,
            [len(c.files) for c in characters],
            [c.name for c in characters],
            [str(c.folder) for c in characters],
        )

    signature = [image_size, FILTER_NAME, "inverted", file_signature(files, base)]
    key = f"omniglot-{split}-{image_size}"
    return load_cached(cache_folder(cache, base), key, signature, build, f"omniglot/{split}", rotations)


def count_omniglot(root: str | Path | None) -> dict[str, tuple[int, int]]:
    """`{split: (characters, drawings)}` for every split whose folders are present (no decoding)."""
    base = omniglot_base(root)
    listed = {s: folder_characters(base, f) for s, f in FOLDERS.items() if (base / f).is_dir()}
    if not listed:
        raise DatasetError(f"{base}: neither {FOLDERS['background']}/ nor {FOLDERS['evaluation']}/ found")
    splits = dict(listed)
    if len(listed) == len(FOLDERS):
        pooled = [c for characters in listed.values() for c in characters]
        splits.update({s: vinyals_split(base, pooled, s) for s in VINYALS_SPLITS})
    return {s: (len(chars), sum(len(c.files) for c in chars)) for s, chars in splits.items()}
