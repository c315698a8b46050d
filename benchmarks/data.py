"""The IQA training data path against the model it feeds: crops per second, in one run.

A generated database of JPEG photos (`--images` of `--size`, as TID2013/KADID-10k ship them) is meta-sampled
as `metalearn iqa train` does (T = 5 distortion tasks, batches of 8 crops of 224, k = 6 support and 6 query
batches each); every batch is consumed, no model runs. Reported per worker count: crops per second with the
image cache warm (decoded once into a memory-mapped cache folder beforehand; the one-off decode is timed
too). Against it: crops per second one training step (forward, backward, Adam) of batch 8 consumes for the
compact CNN and ResNet18 on this CPU, and for ResNet18 on a GPU at an assumed step time (`--gpu-step-ms`,
printed with where the figure comes from), and the ratio data / model: above 1 the data path keeps up.

    python benchmarks/data.py                 # about 3 minutes on 2 cores
    python benchmarks/data.py --quick         # under a minute
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metalearn import mse_loss
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.training.tasks import DistortionTaskSampler, TaskConfig

GPU_STEP_MS = 2.7
GPU_SOURCE = (
    "assumed: ResNet18 training at ~3,000 images/s on an A100/H100-class GPU (ResNet-50 trains at ~1,400 "
    "images/s in TF32 on an A100 in NVIDIA's published DeepLearningExamples results; ResNet18 needs 2.3x "
    "fewer FLOPs), i.e. 2.7 ms per batch of 8. A batch of 8 is launch-bound in practice and slower, so the "
    "demand is an upper bound; not measured (no GPU here)"
)


def make_database(root: Path, n: int, size: tuple[int, int], types: int = 5) -> list[IQARecord]:
    """`n` JPEG photos (smooth content plus noise, quality 90) in `types` types x n/types contents."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    records = []
    for i in range(n):
        base = 128 + 100 * np.sin(xx / (20 + i % 17) + i) * np.cos(yy / (15 + i % 13))
        rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) + rng.normal(0, 12, (h, w, 3))
        path = root / f"img{i:04d}.jpg"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
        records.append(IQARecord(str(path), i / n, float(i), "bench", 1 + i % types, 1, f"R{i // types}"))
    return records


def data_rate(records: list[IQARecord], cache: Path, workers: int, iterations: int) -> tuple[float, float]:
    """(crops/s with the cache warm, seconds of the first meta-iteration)."""
    store = ImageStore(cache_dir=cache, workers=workers)
    sampler = DistortionTaskSampler(records, TaskConfig(crop=224, batch_size=8, batches=6), store)
    generator = torch.Generator().manual_seed(0)

    def iteration() -> int:
        crops = 0
        for task in sampler.sample(5, generator):
            for data in (task.support, task.query):
                for inputs, _ in data:
                    crops += len(inputs)
        return crops

    start = time.perf_counter()
    iteration()  # starts the workers
    first = time.perf_counter() - start
    start, crops = time.perf_counter(), 0
    for _ in range(iterations):
        crops += iteration()
    return crops / (time.perf_counter() - start), first


def step_rate(backbone: str, steps: int) -> float:
    """Crops per second one Adam training step of 8 crops of 224 consumes on the CPU."""
    config = ModelConfig(backbone=backbone, pretrained="none")
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    inputs, targets = torch.randn(8, 3, 224, 224), torch.rand(8)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        mse_loss(model(inputs), targets).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 8 / float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="512x384", help="WIDTHxHEIGHT of the generated photos")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--iterations", type=int, default=4, help="Meta-iterations timed per worker count")
    parser.add_argument("--steps", type=int, default=3, help="Training steps timed per model")
    parser.add_argument("--threads", type=int, default=0, help="Model threads [all cores]")
    parser.add_argument("--gpu-step-ms", type=float, default=GPU_STEP_MS)
    parser.add_argument("--quick", action="store_true", help="60 images, 2 iterations, 2 steps")
    args = parser.parse_args()
    if args.quick:
        args.images, args.iterations, args.steps = 60, 2, 2
    size = tuple(int(v) for v in args.size.split("x"))
    cores = os.cpu_count()
    print(f"CPU: {cores} cores (worker counts above that share them); torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        records = make_database(Path(tmp), args.images, size)  # type: ignore[arg-type]
        cache = Path(tmp) / "cache"
        torch.set_num_threads(1)  # the data path: one core for the main process, one per worker
        start = time.perf_counter()
        warm = ImageStore(cache_dir=cache)
        for record in records:
            warm(record.path)
        decode = (time.perf_counter() - start) / len(records)
        print(f"{len(records)} photos {args.size}: first decode into the cache {1000 * decode:.1f} ms each")
        rates = {w: data_rate(records, cache, w, args.iterations) for w in args.workers}

    torch.set_num_threads(args.threads or cores or 1)
    models = {
        "compact CNN (small), CPU": step_rate("small", args.steps),
        "ResNet18, CPU": step_rate("resnet18", args.steps),
        f"ResNet18, GPU (assumed {args.gpu_step_ms:g} ms/step)": 8 / (args.gpu_step_ms / 1000),
    }

    print("\n| data path | crops/s | first meta-iteration (s) |")
    print("|---|---:|---:|")
    for w, (rate, first) in rates.items():
        print(f"| {w} workers | {rate:.0f} | {first:.2f} |")
    names = list(models)
    print(
        "\n| model (batch 8, 224 px, fwd+bwd+Adam) | crops/s consumed | "
        + " | ".join(f"data/model, {w} workers" for w in rates)
        + " |"
    )
    print("|---|---:|" + "---:|" * len(rates))
    for name in names:
        need = models[name]
        print(f"| {name} | {need:.0f} | " + " | ".join(f"{rates[w][0] / need:.2f}x" for w in rates) + " |")
    print(f"\nGPU step time: {GPU_SOURCE}.")
    if 4 in rates:
        gpu = models[names[-1]]
        verdict = "met" if rates[4][0] >= 3 * gpu else "not met on this machine"
        print(
            f"Target (4 workers >= 3x the GPU's demand, {3 * gpu:.0f} crops/s): {rates[4][0]:.0f} crops/s, {verdict}."
        )


if __name__ == "__main__":
    main()
