"""`metalearn iqa predict` end to end against a bare forward pass on the same tensors, in one run.

Generated JPEG photos (`--images` of `--size`, half of them in a second size so that batching by size
matters) are scored whole at batch 32 by `predict_records` (what `metalearn iqa predict` runs: decode,
downscale to `max_side`, group equal sizes, forward, gather scores), once per worker count. The bare
forward pass runs the same model on the same normalised tensors, decoded beforehand, in the same batches.
Reported: images per second of each, and predict / bare (the target is at least 0.8).

    python benchmarks/predict.py                     # compact CNN and ResNet18, about 4 minutes on 2 cores
    python benchmarks/predict.py --quick             # compact CNN only, under a minute
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metalearn_iqa.evaluation.predict import EvalConfig, predict_records, scoring_views
from metalearn_iqa.images.decode import read_image
from metalearn_iqa.images.transforms import normalise
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model


def make_photos(root: Path, n: int, sizes: list[tuple[int, int]]) -> list[str]:
    """`n` JPEG photos (smooth content plus noise, quality 90), alternating between `sizes`."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = 128 + 100 * np.sin(xx / (20 + i % 17) + i) * np.cos(yy / (15 + i % 13))
        rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) + rng.normal(0, 12, (h, w, 3))
        path = root / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


@torch.no_grad()
def bare_forward(model: torch.nn.Module, paths: list[str], config: EvalConfig) -> float:
    """Seconds of the forward passes alone: same images, decoded and normalised beforehand, batched by size."""
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = defaultdict(list)
    for path in paths:
        (view,) = scoring_views(read_image(path), config)
        by_shape[tuple(view.shape)].append(view)
    batches = [
        normalise(torch.stack(views[i : i + config.batch_size]))
        for views in by_shape.values()
        for i in range(0, len(views), config.batch_size)
    ]
    start = time.perf_counter()
    for batch in batches:
        model(batch).double().cpu()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--sizes", default="512x384,384x512", help="Comma-separated WIDTHxHEIGHT")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--backbones", nargs="+", default=["small", "resnet18"])
    parser.add_argument("--threads", type=int, default=0, help="Model threads [all cores]")
    parser.add_argument("--quick", action="store_true", help="compact CNN only, 32 images")
    args = parser.parse_args()
    if args.quick:
        args.images, args.backbones = 32, ["small"]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    print(f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} model threads; torch {torch.__version__}")
    print(
        f"{args.images} JPEG photos ({args.sizes}), whole images, max side {args.max_side}, batch {args.batch_size}"
    )
    print("\n| model | path | images/s | predict / bare |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(Path(tmp), args.images, sizes)  # type: ignore[arg-type]
        for backbone in args.backbones:
            model = build_model(ModelConfig(backbone=backbone, pretrained="none")).eval()
            config = EvalConfig(max_side=args.max_side, batch_size=args.batch_size)
            bare_forward(model, paths[: args.batch_size], config)  # warm-up
            bare = bare_forward(model, paths, config)
            print(f"| {backbone} | bare forward | {len(paths) / bare:.1f} | 1.00 |")
            for workers in args.workers:
                run = EvalConfig(max_side=args.max_side, batch_size=args.batch_size, workers=workers)
                start = time.perf_counter()
                predict_records(model, paths, run)
                seconds = time.perf_counter() - start
                print(
                    f"| {backbone} | predict, {workers} workers | {len(paths) / seconds:.1f} | {bare / seconds:.2f} |"
                )


if __name__ == "__main__":
    main()
