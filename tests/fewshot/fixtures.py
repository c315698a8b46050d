"""Tiny copies of the published few-shot layouts: Omniglot's folders, mini-ImageNet's csv files and pickles,
CIFAR-FS's folders and split files. Every image encodes its class and item so tests can check where it went."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def stroke_image(klass: int, item: int, side: int = 105) -> Image.Image:
    """A 1-bit Omniglot-like drawing: white paper, a black bar whose row encodes the class, column the item."""
    pixels = np.ones((side, side), dtype=bool)
    row = 10 + 4 * (klass % 20)
    pixels[row : row + 3, 5 + 3 * item : 40 + 3 * item] = False
    return Image.fromarray(pixels).convert("1")


def write_omniglot(root: Path, alphabets: dict[str, dict[str, int]] | None = None, drawings: int = 4) -> Path:
    """`images_background/` and `images_evaluation/` with `{folder: {alphabet: characters}}` (default: 3
    alphabets x 3 characters in background, 2 x 2 in evaluation, so 13 characters), `drawings` each."""
    alphabets = alphabets or {
        "images_background": {"Latin": 3, "Greek": 3, "Korean": 3},
        "images_evaluation": {"Atlantean": 2, "Mongolian": 2},
    }
    number = 0
    for folder, counts in alphabets.items():
        for alphabet, characters in counts.items():
            for c in range(1, characters + 1):
                number += 1
                character = root / folder / alphabet / f"character{c:02d}"
                character.mkdir(parents=True)
                for d in range(1, drawings + 1):
                    stroke_image(number, d).save(character / f"{number:04d}_{d:02d}.png")
    return root


def colour_image(klass: int, item: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    """An RGB image whose red channel encodes the class (x 20) and green the item (x 10)."""
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[..., 0], array[..., 1], array[..., 2] = 20 * klass, 10 * item, 128
    return Image.fromarray(array)


def write_miniimagenet_csv(root: Path, classes: dict[str, int] | None = None, per_class: int = 4) -> Path:
    """`train.csv`, `val.csv`, `test.csv` (header `filename,label`) and `images/` as JPEG-free PNG files."""
    classes = classes or {"train": 4, "val": 2, "test": 3}
    (root / "images").mkdir(parents=True)
    k = 0
    for split, count in classes.items():
        rows = []
        for _ in range(count):
            k += 1
            wnid = f"n{k:08d}"
            for i in range(per_class):
                name = f"{wnid}{i + 1:08d}.png"
                colour_image(k, i).save(root / "images" / name)
                rows.append([name, wnid])
        with (root / f"{split}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["filename", "label"])
            writer.writerows(rows)
    return root


def write_miniimagenet_pickles(
    root: Path,
    classes: dict[str, int] | None = None,
    per_class: int = 4,
    val_name: str = "val",
    side: int = 84,
) -> Path:
    """learn2learn's `mini-imagenet-cache-<split>.pkl`: `image_data` N x side x side x 3, `class_dict`.

    Rows are interleaved across classes (row r belongs to class r % classes) so grouping is exercised."""
    classes = classes or {"train": 4, "val": 2, "test": 3}
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for split, count in classes.items():
        wnids = [f"n{k + j + 1:08d}" for j in range(count)]
        images = np.zeros((count * per_class, side, side, 3), dtype=np.uint8)
        class_dict: dict[str, list[int]] = {w: [] for w in wnids}
        for r in range(count * per_class):
            j, item = r % count, r // count
            images[r, ..., 0], images[r, ..., 1] = 20 * (k + j + 1), 10 * item
            class_dict[wnids[j]].append(r)
        k += count
        name = val_name if split == "val" else split
        with (root / f"mini-imagenet-cache-{name}.pkl").open("wb") as fh:
            pickle.dump({"image_data": images, "class_dict": class_dict}, fh)
    return root


CIFAR_SPLITS = {
    "train": ["apple", "bear", "castle", "dolphin"],
    "val": ["eagle", "forest"],
    "test": ["girl", "house", "lamp"],
}


def write_cifarfs(root: Path, per_class: int = 4) -> Path:
    """`cifar100/data/<class>/*.png` (32x32) and `cifar100/splits/bertinetto/{train,val,test}.txt`."""
    base = root / "cifar100"
    (base / "splits" / "bertinetto").mkdir(parents=True)
    k = 0
    for split, names in CIFAR_SPLITS.items():
        (base / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            k += 1
            (base / "data" / name).mkdir(parents=True)
            for i in range(per_class):
                colour_image(k, i, (32, 32)).save(base / "data" / name / f"{name}_{i:03d}.png")
    return root
