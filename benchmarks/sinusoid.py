"""Few-shot sinusoid regression: post-adaptation MSE of every meta-learner against a pre-training baseline.

The standard benchmark of the MAML paper (amplitude in [0.1, 5], phase in [0, pi], x in [-5, 5], an MLP
1-40-40-1 with ReLU). Each method is meta-trained with the same outer Adam and number of iterations, then
adapted on the same held-out tasks with K support points, and its MSE on 100 query points per task is
reported after 1 and after 10 inner steps (each method with its own adaptation rule: SGD at 0.01 for
MAML, FOMAML, Reptile and the baseline, Adam at 0.01 for MetaIQA).

    python benchmarks/sinusoid.py            # full: 4000 iterations per method and K
    python benchmarks/sinusoid.py --quick    # under a minute: a smoke-sized run of the same table
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from metalearn import MetaTrainer, TrainerConfig, get_algorithm, mse_loss
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp

METHODS: dict[str, dict[str, object]] = {
    "maml": {"inner_lr": 0.01, "inner_steps": 1},
    "fomaml": {"inner_lr": 0.01, "inner_steps": 1},
    "reptile": {"inner_lr": 0.01, "inner_steps": 5},
    "metaiqa": {"inner_lr": 0.01, "inner_steps": 1},
    "pooled-baseline": {"adapt_lr": 0.01, "adapt_optimizer": "sgd"},  # multi-task pre-training
}
L2L_METHODS: dict[str, dict[str, object]] = {"l2l-maml": {"inner_lr": 0.01, "inner_steps": 1}}


def evaluate(
    trainer: MetaTrainer, shots: int, steps: tuple[int, ...], tasks: int, seed: int
) -> dict[int, tuple]:
    """Mean and 95% CI of query MSE after each number of adaptation steps, on fixed held-out tasks."""
    sampler = SinusoidSampler(shots=shots, query_shots=100)
    generator = torch.Generator().manual_seed(seed)
    held_out = [sampler.task(generator) for _ in range(tasks)]
    out = {}
    for k in steps:
        losses = []
        for task in held_out:
            adapted = trainer.adapt(task.support, steps=k)
            inputs, targets = next(task.query_batches())
            with torch.no_grad():
                losses.append(mse_loss(adapted(inputs), targets).item())
        mean = sum(losses) / len(losses)
        std = math.sqrt(sum((x - mean) ** 2 for x in losses) / (len(losses) - 1))
        out[k] = (mean, 1.96 * std / math.sqrt(len(losses)))
    return out


def run(args: argparse.Namespace) -> dict[str, dict]:
    methods = dict(METHODS)
    if args.l2l:
        methods.update(L2L_METHODS)
    results: dict[str, dict] = {}
    for shots in args.shots:
        for name, hyper in methods.items():
            model = sinusoid_mlp(seed=args.seed)
            config = TrainerConfig(tasks_per_batch=args.meta_batch, outer_lr=args.outer_lr, seed=args.seed)
            config.progress = not args.no_progress
            trainer = MetaTrainer(
                model,
                algorithm=get_algorithm(name, **hyper),
                sampler=SinusoidSampler(shots=shots, query_shots=shots),
                device="cpu",
                config=config,
            )
            start = time.perf_counter()
            trainer.fit(args.iterations)
            seconds = time.perf_counter() - start
            scores = evaluate(trainer, shots, (1, 10), args.eval_tasks, seed=10_000 + args.seed)
            results.setdefault(f"K={shots}", {})[name] = {
                "mse_1_step": scores[1][0],
                "ci95_1_step": scores[1][1],
                "mse_10_steps": scores[10][0],
                "ci95_10_steps": scores[10][1],
                "train_seconds": seconds,
            }
    return results


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"iterations={args.iterations}, meta-batch={args.meta_batch}, outer Adam lr={args.outer_lr}, "
        f"{args.eval_tasks} held-out tasks x 100 query points, seed={args.seed}",
        "",
        "| K | method | MSE after 1 step | MSE after 10 steps | vs pooled-baseline (10 steps) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for k, rows in results.items():
        base = rows["pooled-baseline"]["mse_10_steps"]
        for name, r in rows.items():
            lines.append(
                f"| {k} | {name} | {r['mse_1_step']:.3f} ± {r['ci95_1_step']:.3f} | "
                f"{r['mse_10_steps']:.3f} ± {r['ci95_10_steps']:.3f} | {r['mse_10_steps'] / base:.2f}x | "
                f"{r['train_seconds']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (under a minute)")
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--meta-batch", type=int, default=10)
    parser.add_argument("--outer-lr", type=float, default=1e-3)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--l2l", action="store_true", help="also run learn2learn's MAML (needs the l2l extra)"
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.meta_batch, args.eval_tasks, args.outer_lr = 200, 5, 50, 3e-3
    torch.set_num_threads(1)  # tiny MLPs: threads cost more than they give
    results = run(args)
    print(table(results, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
