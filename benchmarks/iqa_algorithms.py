"""Meta-algorithms side by side on the synthetic IQA problem: cost per outer iteration and held-out SROCC.

Every algorithm trains the same network on the same distortion-specific tasks (same seed, same images per
iteration), then is scored on held-out distortion types after the same fine-tuning. Times are reported as
ratios to the baseline's iteration (plain Adam steps on the same images), measured in this run.

    python benchmarks/iqa_algorithms.py --iterations 20                 # cost table + SROCC after 20 iterations
    python benchmarks/iqa_algorithms.py --algorithms metaiqa baseline --iterations 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from metalearn_iqa.data.synthetic import default_root, load_synthetic
from metalearn_iqa.demo import DemoConfig, score_held_out
from metalearn_iqa.images import ImageStore
from metalearn_iqa.prior import ALGORITHMS, make_trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    config = DemoConfig(seed=args.seed, iterations=args.iterations, threads=args.threads)
    torch.set_num_threads(args.threads)
    records = load_synthetic(default_root(config.synthetic), config.synthetic)
    store = ImageStore(capacity=len(records) + 16)
    train = [r for r in records if r.distortion not in config.held_out]
    groups = {k: [r for r in records if r.distortion == k] for k in config.held_out}

    rows = {}
    for name in args.algorithms:
        trainer = make_trainer(config.prior(name), train, store)
        trainer.config.progress = False
        times = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            trainer.step()
            times.append(time.perf_counter() - start)
        scores = score_held_out(trainer.model, groups, config, store)
        rows[name] = {
            "seconds": statistics.median(times[1:] or times),
            "zero_shot": float(np.mean(list(scores["zero_shot"].values()))),
            "finetuned": float(np.mean(list(scores["finetuned"].values()))),
        }
        print(f"{name}: {rows[name]}", flush=True)

    base = rows.get("baseline", next(iter(rows.values())))["seconds"]
    print(
        f"\n{args.iterations} iterations, {config.tasks_per_batch} tasks x {config.inner_steps} inner steps, "
        f"crop {config.crop}, batch {config.batch_size}, {args.threads} threads, seed {args.seed}"
    )
    print("| algorithm | s / iteration | vs baseline | held-out SROCC zero-shot | after fine-tuning |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['seconds']:.2f} | {r['seconds'] / base:.2f}x | {r['zero_shot']:.3f} | {r['finetuned']:.3f} |"
        )


if __name__ == "__main__":
    main()
