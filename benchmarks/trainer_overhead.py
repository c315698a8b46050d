"""The trainer's own cost per meta-iteration: `MetaTrainer.step` against a bare loop doing the same work.

Both sample the same sinusoid meta-batch (10 tasks, K = 10), compute each task's meta-gradient with the same
algorithm, average them and take one outer Adam step; the bare loop does nothing else. Interleaved repeats,
medians; the ratio is the trainer's overhead (fault checks, BatchNorm bookkeeping, metrics, all-reduce).

    python benchmarks/trainer_overhead.py --algorithm maml --backend func
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from metalearn import MetaTrainer, TrainerConfig, mse_loss
from metalearn.algorithms import MAML
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithm", choices=["maml", "fomaml"], default="maml")
    parser.add_argument("--backend", default=None, help="func or higher (omit for the algorithm's default)")
    parser.add_argument("--iterations", type=int, default=20, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kw = {} if args.backend is None else {"backend": args.backend}
    algorithm = MAML(0.01, 1, first_order=args.algorithm == "fomaml", **kw)
    sampler = SinusoidSampler(10, 10)
    config = TrainerConfig(tasks_per_batch=10, progress=False)
    trainer = MetaTrainer(sinusoid_mlp(), algorithm, sampler, device="cpu", config=config)

    model = sinusoid_mlp()
    params = list(model.parameters())
    adam = torch.optim.Adam(params, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    meta_steps = getattr(algorithm, "meta_steps", None)

    def bare() -> None:
        tasks = sampler.sample(10, generator)
        if meta_steps is not None:
            results = list(meta_steps(model, tasks, mse_loss))
        else:
            results = [algorithm.meta_step(model, t, mse_loss) for t in tasks]
        for name, p in model.named_parameters():
            p.grad = sum(r.gradient[name] for r in results) / len(results)
        adam.step()
        adam.zero_grad(set_to_none=True)

    samples: dict[str, list[float]] = {"MetaTrainer.step": [], "bare loop": []}

    def step() -> None:
        trainer.step()

    runs: dict[str, Callable[[], None]] = {"MetaTrainer.step": step, "bare loop": bare}
    for run in runs.values():
        run()
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(args.iterations):
                run()
            samples[name].append((time.perf_counter() - start) / args.iterations)
    step_s, loop_s = (statistics.median(samples[n]) for n in runs)
    print(
        f"{args.algorithm} ({args.backend or 'default backend'}): MetaTrainer.step {1000 * step_s:.2f} ms, "
        f"bare loop {1000 * loop_s:.2f} ms, trainer overhead {step_s / loop_s - 1:+.0%}"
    )


if __name__ == "__main__":
    main()
