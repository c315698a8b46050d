"""Are the embedded glyphs a meaningful few-shot benchmark? Train three learners for the same compute
budget and score them on the same 5-way 1-shot test episodes (disjoint classes), in one run.

The budget is CPU time of this process (`time.process_time`, all threads): `--seconds 60 --threads 2` trains
each learner until it has used 120 CPU-seconds, what one minute on two otherwise idle cores gives. On a
shared machine the wall time is longer; both are printed.


- ProtoNet (Snell et al. 2017), its loss written inline: conv-4 embedding, 20-way 1-shot 5-query training
  episodes, Adam 1e-3; tested with running BatchNorm statistics.
- MAML from the registry through `MetaTrainer`: conv-4 with a 5-way head, 5-way 1-shot 15-query
  episodes, 4 tasks per meta-batch, one inner step at 0.4 (Omniglot's settings), 3 test steps,
  transductive BatchNorm as MAML's code.
- A pretrain-then-finetune baseline (Chen et al. 2019's "Baseline"): conv-4 plus a linear head over all
  training classes, plain mini-batch training (64 images, Adam 1e-3); at test, the features frozen, a new
  5-way head trained on the support set (100 Adam steps at 0.01).

Also printed, as difficulty references: nearest prototype in pixel space, and an untrained ProtoNet.

    python benchmarks/glyphs.py                   # 120 CPU-s per learner, ~15 minutes in all
    python benchmarks/glyphs.py --seconds 10 --episodes 200    # a quick look

Measured on the shared 2-core machine (two runs): pixel-space prototypes 52.1 %, untrained ProtoNet 55.7 %,
ProtoNet 86.2 % / 87.8 %, pretrain + finetune 59.2 %, MAML 35.4 % / 37.5 % (see docs/fewshot.md).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn import MetaAlgorithm, MetaTrainer, TrainerConfig, get_algorithm
from metalearn.episodes import ClassDataset, EpisodeSampler, evaluate
from metalearn.task import TaskData, cycle_batches
from metalearn_fewshot.data.glyphs import GlyphConfig, load_glyphs
from metalearn_fewshot.models import conv4, conv4_embedding

T = TypeVar("T")


class Prototypes(nn.Module):
    """Logits = minus squared distances to the class means of the support embeddings."""

    def __init__(self, embed: nn.Module, support: tuple[Tensor, Tensor]) -> None:
        super().__init__()
        self.embed = embed
        x, y = support
        with torch.no_grad():
            z = embed(x)
        self.centres = torch.stack([z[y == c].mean(0) for c in range(int(y.max()) + 1)])

    def forward(self, x: Tensor) -> Tensor:
        return -torch.cdist(self.embed(x), self.centres).pow(2)


class PrototypeAdapt:
    """`adapt` for `evaluate`: the prototype classifier of the support set (no inner steps)."""

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: object, steps: int | None = None) -> nn.Module:
        return Prototypes(model, next(cycle_batches(data)))


class HeadFinetune:
    """`adapt` for `evaluate`: frozen features, a new linear head trained on the support set."""

    def __init__(self, ways: int, steps: int = 100, lr: float = 0.01) -> None:
        self.ways, self.steps, self.lr = ways, steps, lr

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: object, steps: int | None = None) -> nn.Module:
        x, y = next(cycle_batches(data))
        features = model.get_submodule("features")
        with torch.no_grad():
            z = features(x)
        head = nn.Linear(z.shape[1], self.ways)
        opt = torch.optim.Adam(head.parameters(), lr=self.lr)
        for _ in range(self.steps):
            opt.zero_grad()
            F.cross_entropy(head(z), y).backward()
            opt.step()
        return nn.Sequential(features, head)


class Clock:
    """Stops after `seconds` x threads of CPU time used by this process."""

    def __init__(self, seconds: float) -> None:
        self.cpu = seconds * torch.get_num_threads()
        self.start_cpu, self.start_wall = time.process_time(), time.perf_counter()

    def running(self) -> bool:
        return time.process_time() - self.start_cpu < self.cpu

    def report(self, steps: int) -> str:
        cpu, wall = time.process_time() - self.start_cpu, time.perf_counter() - self.start_wall
        return f"{steps} steps, {cpu:.0f} CPU-s, {wall:.0f} s wall"


def proto_loss(
    embed: nn.Module, task_support: tuple[Tensor, Tensor], task_query: tuple[Tensor, Tensor]
) -> Tensor:
    (xs, ys), (xq, yq) = task_support, task_query
    z = embed(torch.cat([xs, xq]))
    zs, zq = z[: len(xs)], z[len(xs) :]
    centres = torch.stack([zs[ys == c].mean(0) for c in range(int(ys.max()) + 1)])
    return F.cross_entropy(-torch.cdist(zq, centres).pow(2), yq)


def train_protonet(train: ClassDataset, seconds: float) -> tuple[nn.Module, str]:
    embed = conv4_embedding(1, 64, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(embed.parameters(), lr=1e-3)
    sampler, g = EpisodeSampler(train, 20, 1, 5), torch.Generator().manual_seed(1)
    steps, clock = 0, Clock(seconds)
    while clock.running():
        task = sampler.sample(1, g)[0]
        loss = proto_loss(embed, next(task.support_batches()), next(task.query_batches()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return embed, clock.report(steps)


def train_maml(train: ClassDataset, seconds: float) -> tuple[nn.Module, MetaAlgorithm, str]:
    model = conv4(5, 1, 28, 64, torch.Generator().manual_seed(0))
    algorithm = get_algorithm("maml", inner_lr=0.4, inner_steps=1)
    trainer = MetaTrainer(
        model,
        algorithm,
        EpisodeSampler(train, 5, 1, 15),
        loss_fn=F.cross_entropy,
        device="cpu",
        config=TrainerConfig(tasks_per_batch=4, outer_lr=1e-3, progress=False, seed=1),
    )
    steps, clock = 0, Clock(seconds)
    while clock.running():
        trainer.step()
        steps += 1
    return trainer.model, algorithm, clock.report(steps)


def train_baseline(train: ClassDataset, seconds: float) -> tuple[nn.Module, str]:
    model = conv4(train.num_classes, 1, 28, 64, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = torch.arange(train.num_classes).repeat_interleave(train.base_sizes)
    g = torch.Generator().manual_seed(1)
    steps, clock = 0, Clock(seconds)
    while clock.running():
        rows = torch.randint(len(labels), (64,), generator=g)
        loss = F.cross_entropy(model(train.images[rows].float() / 255), labels[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model, clock.report(steps)


def training(threads: int, train: Callable[..., T], *args: object) -> T:
    """Run `train(*args)` with `threads` torch threads (the budget's), then back to one."""
    torch.set_num_threads(threads)
    try:
        return train(*args)
    finally:
        torch.set_num_threads(1)


def pixel_prototypes(test: ClassDataset, episodes: int) -> float:
    return evaluate(
        nn.Flatten(),
        PrototypeAdapt(),
        test,
        episodes=episodes,
        ways=5,
        shots=1,
        batchnorm="running",
    ).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="training budget per learner")
    parser.add_argument("--episodes", type=int, default=600, help="5-way 1-shot test episodes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads while training")
    parser.add_argument("--only", choices=("protonet", "maml", "baseline"), nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)  # scoring is not timed; tiny per-episode ops are fastest on one thread
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        train = load_glyphs("train", cache=cache)
        test = load_glyphs("test", cache=cache)
        print(f"glyphs {GlyphConfig()}: generated in {time.perf_counter() - start:.1f} s")
    print(f"train {train}\ntest  {test}")
    test_5w1s = {"episodes": args.episodes, "ways": 5, "shots": 1, "seed": 123}
    print(f"pixel-space nearest prototype: {pixel_prototypes(test, args.episodes):.3f}", flush=True)
    untrained = conv4_embedding(1, 64, torch.Generator().manual_seed(0))
    result = evaluate(untrained, PrototypeAdapt(), test, batchnorm="transductive", **test_5w1s)
    print(f"untrained conv-4 prototypes: {result}", flush=True)
    only = set(args.only or ("protonet", "maml", "baseline"))
    print(f"budget per learner: {args.seconds:.0f} s x {args.threads} threads of CPU time", flush=True)
    if "protonet" in only:
        embed, steps = training(args.threads, train_protonet, train, args.seconds)
        result = evaluate(embed, PrototypeAdapt(), test, batchnorm="running", **test_5w1s)
        print(f"ProtoNet, 20-way episodes ({steps}): {result}", flush=True)
    if "maml" in only:
        model, algorithm, steps = training(args.threads, train_maml, train, args.seconds)
        result = evaluate(model, algorithm, test, steps=3, batchnorm="transductive", **test_5w1s)
        print(f"MAML, meta-batches of 4 ({steps}): {result}", flush=True)
    if "baseline" in only:
        model, steps = training(args.threads, train_baseline, train, args.seconds)
        finetune = HeadFinetune(5)
        result = evaluate(copy.deepcopy(model), finetune, test, batchnorm="running", **test_5w1s)
        print(f"pretrain + finetune, batches of 64 ({steps}): {result}", flush=True)


if __name__ == "__main__":
    main()
