"""Seconds per few-shot meta-iteration on a conv-4: ANIL against MAML (its raison d'être), and the peers.

Conv-4 (`--filters` 3x3 filters, BatchNorm with batch statistics, ReLU, 2x2 max-pool, four times; a linear
head), `--size` x `--size` grayscale images (Omniglot: 28), N-way 1-shot with `--queries` queries a class,
`--tasks` episodes per meta-iteration, `--steps` inner SGD steps. Every peer computes the meta-gradient of
the same episodes (random tensors made once: the data path is not measured); the peers run interleaved
(A, B, C..., then again) and the medians are printed, with each one's ratio to our MAML's time.

- ours: `maml` (second order, torch.func task by task: BatchNorm in training mode), `fomaml`, `anil` and
  `anil` first-order, `metasgd`, `protonet`;
- learn2learn (when installed): `MAML` on the whole network, and its ANIL recipe (the body's features once,
  `MAML` on the head), checked to give our ANIL's meta-gradient before timing.

    python benchmarks/fewshot_algorithms.py                       # conv-4 64 filters, 28 px, 4 tasks
    python benchmarks/fewshot_algorithms.py --steps 5 --peers "anil,anil first-order,l2l ANIL recipe"
    python benchmarks/fewshot_algorithms.py --steps 5 --size 84 --filters 32 --channels 3   # mini-ImageNet
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import cast

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from metalearn.algorithms import get_algorithm
from metalearn.task import Batch, Task


def conv4(channels: int, filters: int, size: int, ways: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = channels
    for _ in range(4):
        layers += [nn.Conv2d(c, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d(2)]
        c = filters
        size //= 2
    return nn.Sequential(nn.Sequential(*layers, nn.Flatten()), nn.Linear(filters * size * size, ways))


def episodes(n: int, ways: int, queries: int, channels: int, size: int) -> list[Task]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ys, yq = torch.arange(ways), torch.arange(ways).repeat_interleave(queries)
        xs = torch.randn(ways, channels, size, size, generator=g)
        xq = torch.randn(len(yq), channels, size, size, generator=g)
        out.append(Task(support=(xs, ys), query=(xq, yq)))
    return out


def l2l_peers(steps: int, lr: float) -> dict[str, Callable[[nn.Module, list[Task]], dict[str, torch.Tensor]]]:
    try:
        from metalearn.algorithms.l2l import import_learn2learn

        l2l = import_learn2learn()
    except ImportError:
        return {}

    def maml(model: nn.Module, tasks: list[Task]) -> dict[str, torch.Tensor]:
        wrapper = l2l.algorithms.MAML(model, lr=lr)
        for task in tasks:
            learner = wrapper.clone()
            (xs, ys), (xq, yq) = cast(Batch, task.support), cast(Batch, task.query)
            for _ in range(steps):
                learner.adapt(cross_entropy(learner(xs), ys))
            cross_entropy(learner(xq), yq).backward()
        return {n: p.grad for n, p in model.named_parameters()}  # type: ignore[misc]

    def anil(model: nn.Module, tasks: list[Task]) -> dict[str, torch.Tensor]:
        body, head = model[0], l2l.algorithms.MAML(model[1], lr=lr)  # type: ignore[index]
        for task in tasks:
            learner = head.clone()
            (xs, ys), (xq, yq) = cast(Batch, task.support), cast(Batch, task.query)
            features = body(xs)
            for _ in range(steps):
                learner.adapt(cross_entropy(learner(features), ys))
            cross_entropy(learner(body(xq)), yq).backward()
        return {n: p.grad for n, p in model.named_parameters()}  # type: ignore[misc]

    return {"l2l MAML": maml, "l2l ANIL recipe": anil}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", default="", help="comma-separated subset of the peers (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = conv4(args.channels, args.filters, args.size, args.ways).train()
    tasks = episodes(args.tasks, args.ways, args.queries, args.channels, args.size)

    def ours(name: str, **hyper: object) -> Callable[[nn.Module, list[Task]], dict[str, torch.Tensor]]:
        algorithm = get_algorithm(name, **hyper)

        def run(m: nn.Module, ts: list[Task]) -> dict[str, torch.Tensor]:
            total: dict[str, torch.Tensor] = {}
            for result in algorithm.meta_steps(m, ts, cross_entropy):  # summed as MetaTrainer does
                for k, g in result.gradient.items():
                    total[k] = total[k] + g if k in total else g
            return total

        return run

    inner = {"inner_lr": args.lr, "inner_steps": args.steps}
    peers = {
        "maml": ours("maml", **inner),
        "fomaml": ours("fomaml", **inner),
        "anil": ours("anil", **inner),
        "anil first-order": ours("anil", first_order=True, **inner),
        "metasgd": ours("metasgd", **inner),
        "protonet": ours("protonet"),
        **l2l_peers(args.steps, args.lr),
    }
    if args.peers:
        chosen = ["maml", *(name.strip() for name in args.peers.split(","))]  # maml: the reference
        peers = {name: peers[name] for name in dict.fromkeys(chosen)}
    if "l2l ANIL recipe" in peers and "anil" in peers:  # the same maths before timing
        got = peers["anil"](model, tasks)
        expected = peers["l2l ANIL recipe"](copy.deepcopy(model), tasks)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-6)

    for peer in peers.values():  # one untimed run each: first-call costs (allocations, kernels) left out
        peer(copy.deepcopy(model), tasks)
    times: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.repeats):
        for name, peer in peers.items():
            replica = copy.deepcopy(model)
            start = time.perf_counter()
            peer(replica, tasks)
            times[name].append(time.perf_counter() - start)
    print(
        f"conv-4 {args.filters} filters, {args.channels}x{args.size}x{args.size}, {args.ways}-way 1-shot, "
        f"{args.queries} queries a class, {args.tasks} tasks, {args.steps} inner step(s), "
        f"{args.threads} thread(s); median and fastest of {args.repeats} interleaved runs"
    )
    base, fastest = statistics.median(times["maml"]), min(times["maml"])
    for name, values in times.items():
        median, low = statistics.median(values), min(values)
        print(
            f"  {name:18s} median {median:7.3f} s ({median / base:5.2f}x maml)   "
            f"fastest {low:7.3f} s ({low / fastest:5.2f}x maml)"
        )


if __name__ == "__main__":
    main()
