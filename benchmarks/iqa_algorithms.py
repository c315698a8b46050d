"""Meta-algorithms side by side on the synthetic IQA problem: cost per forward+backward pass.

Every algorithm trains the same network on the same training types with the demo's settings
(`metalearn_iqa.protocols.heldout.DemoConfig`; `--backbone resnet18` swaps in the paper's network). Reported: median
seconds per outer iteration, the passes one iteration spends (`PriorConfig.passes_per_iteration`), seconds per
pass, and that as a ratio to the plain baseline's pass (one Adam step per batch), all measured in this run.
A ratio above 1 is the algorithm's own overhead (copies, inner optimizers, second-order terms). The
images are decoded into the cache before timing and the algorithms are stepped in turn (interleaved), so
neither image decoding nor load on a shared machine lands on one algorithm more than another.

    python benchmarks/iqa_algorithms.py --iterations 20
    python benchmarks/iqa_algorithms.py --backbone resnet18 --iterations 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from metalearn.algorithms import ALGORITHMS
from metalearn_iqa.data.synthetic import default_root, load_synthetic
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.protocols.heldout import DemoConfig, split_contents
from metalearn_iqa.training.prior import make_trainer

DEFAULT_ALGORITHMS = ["metaiqa", "maml", "fomaml", "reptile", "baseline", "pooled-baseline"]
"""The first-party algorithms (the learn2learn ones need the extra: name them to include them)."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(ALGORITHMS))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--backbone", choices=["small", "resnet18"], default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    config = DemoConfig(threads=args.threads)
    if args.backbone == "resnet18":
        config.model = ModelConfig()
    torch.set_num_threads(args.threads)
    records = load_synthetic(default_root(config.synthetic), config.synthetic)
    store = ImageStore(capacity=len(records) + 16)
    train = split_contents(records, config, args.seed).train

    for record in train:  # decode every image once: the first algorithm to draw one would pay for it
        store(record.path)
    trainers, passes = {}, {}
    for name in args.algorithms:
        prior = dataclasses.replace(config.prior(name, args.seed), iterations=args.iterations)
        trainers[name] = make_trainer(prior, train, store)
        trainers[name].config.progress = False
        passes[name] = prior.passes_per_iteration()
        trainers[name].step()  # warm-up: first-call allocations and image decoding
    # Interleaved: every round steps each algorithm once, so a shared machine's load hits them alike
    # (run one after the other, the first ones measured here differed by up to 1.5x from run to run).
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.iterations):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.step()
            times[name].append(time.perf_counter() - start)
    rows = {}
    for name in trainers:
        seconds = statistics.median(times[name])
        rows[name] = {"seconds": seconds, "passes": passes[name], "per_pass": seconds / passes[name]}
        print(f"{name}: {rows[name]}", flush=True)

    base = rows.get("baseline", next(iter(rows.values())))["per_pass"]
    print(
        f"\n{args.backbone}, {args.iterations} iterations, crop {config.crop}, batch {config.batch_size}, "
        f"{args.threads} threads, seed {args.seed}"
    )
    print("| algorithm | s / iteration | passes / iteration | ms / pass | vs baseline (per pass) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['seconds']:.3f} | {r['passes']} | {1000 * r['per_pass']:.1f} | "
            f"{r['per_pass'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
