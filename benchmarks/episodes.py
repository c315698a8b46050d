"""How fast episodes are drawn, and how fast a split loads cold (decoding) and cached (memory-mapped).

Sampler: `EpisodeSampler` episodes per second, 5-way 1-shot and 5-shot with 15 queries per class, on an
Omniglot-sized set (the glyphs: 1,000 classes x 20 items of 1x28x28, x4 rotations as in the papers) and
an 84x84 RGB set the size of mini-ImageNet's training split (64 classes x 600 items, random pixels, a
memory-mapped .npy file as the cache serves it). Against it, in the same run on the same uint8 tensors:
learn2learn's `TaskDataset` with its usual transforms (`NWays`, `KShots`, `LoadData`, `RemapLabels`,
`ConsecutiveLabels`, then `partition_task` into support and query), when learn2learn is installed. Both
produce float support/query tensors with remapped labels.

Load: an Omniglot-layout folder of 105x105 1-bit PNGs (`--characters` x 20 drawings) read with
`load_omniglot`: cold (decode every file, write the cache) and cached (listing, signature, memory map).

    python benchmarks/episodes.py              # about 2 minutes on 2 cores
    python benchmarks/episodes.py --quick      # fewer episodes and characters

Measured on the shared 2-core machine (one thread, load ~5 from other jobs), episodes per second, ours vs
learn2learn: glyphs x4 rotations 5w1s 813 vs 285 (2.9x), 5w5s 881 vs 244 (3.6x); 84x84 RGB memory-mapped
5w1s 327 vs 44 (7.5x), 5w5s 283 vs 40 (7.0x). Omniglot-sized background split (19,280 PNGs): cold load
7.0 s, cached 0.57 s (12x; the cached load is the folder listing and file signature).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metalearn.episodes import ClassDataset, EpisodeSampler
from metalearn_fewshot.data.glyphs import GlyphConfig, glyph_class, load_glyphs
from metalearn_fewshot.data.omniglot import load_omniglot

REPEATS = 3
"""Each rate is the best of this many timed rounds, ours and the peer's interleaved (a shared machine's
other jobs only ever slow a round down)."""


def rate(draw: Callable[[], object], episodes: int) -> float:
    draw()  # warm-up
    start = time.perf_counter()
    for _ in range(episodes):
        draw()
    return episodes / (time.perf_counter() - start)


def ours(dataset: ClassDataset, ways: int, shots: int, queries: int) -> Callable[[], object]:
    sampler, generator = EpisodeSampler(dataset, ways, shots, queries), torch.Generator().manual_seed(0)
    return lambda: sampler.sample(1, generator)


def l2l_draw(dataset: ClassDataset, ways: int, shots: int, queries: int) -> Callable[[], object] | None:
    """learn2learn's task pipeline over the same uint8 items (as floats, as its datasets hand them)."""
    try:
        import learn2learn as l2l
        from learn2learn.data.utils import partition_task
    except ImportError:
        return None
    labels = torch.arange(dataset.num_base_classes).repeat_interleave(dataset.base_sizes)
    images = dataset.images

    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return images[i].float().div_(255), int(labels[i])

    by_class = {
        c: list(range(int(s), int(s + n)))
        for c, (s, n) in enumerate(zip(dataset.base_starts, dataset.base_sizes))
    }
    meta = l2l.data.MetaDataset(Items(), labels_to_indices=by_class)
    transforms = [
        l2l.data.transforms.NWays(meta, ways),
        l2l.data.transforms.KShots(meta, shots + queries),
        l2l.data.transforms.LoadData(meta),
        l2l.data.transforms.RemapLabels(meta),
        l2l.data.transforms.ConsecutiveLabels(meta),
    ]
    tasks = l2l.data.TaskDataset(meta, transforms, num_tasks=-1)

    def draw() -> object:
        x, y = tasks.sample()
        return partition_task(x, y, shots=shots)

    return draw


def rgb_set(folder: Path, classes: int, per_class: int) -> ClassDataset:
    """A memory-mapped N x 3 x 84 x 84 uint8 file of random pixels."""
    path = folder / "rgb.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(classes * per_class, 3, 84, 84))
    rng = np.random.default_rng(0)
    for c in range(classes):
        array[c * per_class : (c + 1) * per_class] = rng.integers(
            0, 256, (per_class, 3, 84, 84), dtype=np.uint8
        )
    array.flush()
    del array
    names = [f"n{c:08d}" for c in range(classes)]
    return ClassDataset(np.load(path, mmap_mode="c"), [per_class] * classes, names, "rgb84")


def write_omniglot_layout(root: Path, characters: int) -> None:
    """`images_background/<Alphabet>/character<NN>/<IIII>_<DD>.png`, glyph drawings at 105x105, 1-bit."""
    config = GlyphConfig(size=105, supersample=1, instances=20)
    for number in range(characters):
        folder = (
            root / "images_background" / f"Alphabet{number // 20:02d}" / f"character{number % 20 + 1:02d}"
        )
        folder.mkdir(parents=True)
        for d, drawing in enumerate(glyph_class(number, config), start=1):
            Image.fromarray(drawing < 128).convert("1").save(folder / f"{number + 1:04d}_{d:02d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the sampler is one gather)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    episodes = 100 if args.quick else 500
    characters = 100 if args.quick else 964
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        glyphs = load_glyphs("train", cache=folder / "glyphs").with_rotations(4)
        rgb = rgb_set(folder, 64, 600)
        print(f"{'set':<34} {'episode':<16} {'metalearn/s':>12} {'l2l/s':>9} {'ratio':>7}")
        for data in (glyphs, rgb):
            for shots in (1, 5):
                mine, peer_draw = ours(data, 5, shots, 15), l2l_draw(data, 5, shots, 15)
                best, theirs = 0.0, 0.0
                for _ in range(REPEATS):
                    best = max(best, rate(mine, episodes))
                    if peer_draw is not None:
                        theirs = max(theirs, rate(peer_draw, episodes // 4))
                peer = f"{theirs:9.0f} {best / theirs:6.1f}x" if theirs else f"{'-':>9} {'-':>7}"
                label = f"{data.name} {data.num_classes} cl. {'x'.join(map(str, data.image_shape))}"
                print(f"{label:<34} {f'5-way {shots}-shot q15':<16} {best:12.0f} {peer}", flush=True)
        root = folder / "omniglot"
        start = time.perf_counter()
        write_omniglot_layout(root, characters)
        print(
            f"\nOmniglot layout: {characters} characters x 20 PNGs written in {time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        cold = load_omniglot(root, "background")
        cold_s = time.perf_counter() - start
        cached_s = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            cached = load_omniglot(root, "background")
            cached_s = min(cached_s, time.perf_counter() - start)
        assert torch.equal(cold.images, cached.images)
        print(
            f"load_omniglot {len(cold.images)} images: cold {cold_s:.2f} s, cached {cached_s:.3f} s ({cold_s / cached_s:.0f}x)"
        )


if __name__ == "__main__":
    main()
