"""Shared fixtures: a tiny KADID-10k-layout database with enough contents and types for tasks and protocols."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

KADID_TYPES = (1, 9, 25)
KADID_REFS = 4
KADID_LEVELS = (1, 3)


def write_kadid_like(
    root: str | Path,
    refs: int = KADID_REFS,
    types: tuple[int, ...] = KADID_TYPES,
    levels: tuple[int, ...] = KADID_LEVELS,
) -> Path:
    """`root/images/I01_09_03.png` ... and `root/dmos.csv` as KADID-10k publishes them; images are 8x10 noise.

    Every distorted image gets a distinct DMOS (higher = better, 1..5), falling with the level.
    """
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for ref in range(1, refs + 1):
        Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(images / f"I{ref:02d}.png")
        for kind in types:
            for level in levels:
                name = f"I{ref:02d}_{kind:02d}_{level:02d}.png"
                Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(images / name)
                dmos = round(4.9 - 0.8 * level - 0.03 * kind - 0.011 * ref, 4)
                rows.append([name, f"I{ref:02d}.png", dmos, 0.1])
    with (root / "dmos.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dist_img", "ref_img", "dmos", "var"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def kadid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KADID-layout database: 4 references x 3 types (1, 9, 25) x 2 levels = 24 distorted images."""
    return write_kadid_like(tmp_path_factory.mktemp("kadid"))


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny CPU models are fastest on one thread, and immune to oversubscription when jobs share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under each of two umasks (the process-wide one is restored afterwards)."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)
