"""The few-shot demo: on the embedded glyphs, ProtoNets and MAML against a plain pre-train-then-fine-tune
baseline, each trained for the same images through the same `MetaTrainer`, scored on the same 5-way 1-shot
test episodes (classes never seen in training), with 95 % intervals and paired differences.

    report = run_demo(DemoConfig())          # what `metalearn fewshot demo` prints
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from metalearn import MetaTrainer, TrainerConfig
from metalearn.episodes import ClassDataset, EpisodeSampler, EvaluationResult, confidence95, evaluate
from metalearn.episodes.evaluate import Adapter
from metalearn_fewshot.baseline import ClassBatchSampler, HeadFinetune
from metalearn_fewshot.data.registry import load_split
from metalearn_fewshot.models import conv4
from metalearn_fewshot.training import FewshotConfig, make_trainer, passes_per_iteration

METHODS = ("protonet", "maml", "baseline")


@dataclass(frozen=True)
class DemoConfig:
    """The demo's budget and settings. Every method trains `iterations` outer steps on the same number of
    images per step (`tasks_per_batch` episodes of `ways` x (`shots` + `query`) images; the baseline: one
    batch of as many images, `batch_classes` classes at a time). MAML uses Omniglot's settings (inner rate
    0.4, one inner step in training, `maml_test_steps` at test); ProtoNets train on `protonet_ways`-way
    episodes of the same size in images when possible (they gain from more ways); the baseline fine-tunes a
    new head for `finetune_steps` Adam steps at `finetune_lr`. Every network is the conv-4 with `hidden`
    filters (32, as MAML on mini-ImageNet: the CPU budget)."""

    iterations: int = 250
    hidden: int = 32
    tasks_per_batch: int = 4
    ways: int = 5
    shots: int = 1
    query: int = 15
    episodes: int = 600
    maml_inner_lr: float = 0.4
    maml_test_steps: int = 3
    batch_classes: int = 20
    finetune_steps: int = 100
    finetune_lr: float = 0.01
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.type == "float":
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValueError(f"{spec.name} must be a finite number, got {value!r}")
                if not value > 0:
                    raise ValueError(f"{spec.name} must be positive, got {value}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{spec.name} must be a whole number, got {value!r}")
            elif value < (0 if spec.name in ("seed", "threads") else 1):
                raise ValueError(
                    f"{spec.name} must be at least {0 if spec.name in ('seed', 'threads') else 1}, got {value}"
                )
        if self.images_per_iteration % self.batch_classes:
            raise ValueError(
                f"the baseline's batch of {self.images_per_iteration} images must split evenly over "
                f"{self.batch_classes} classes"
            )

    @property
    def images_per_iteration(self) -> int:
        return self.tasks_per_batch * self.ways * (self.shots + self.query)

    def fewshot(self, algorithm: str, **changes: Any) -> FewshotConfig:
        return FewshotConfig(
            algorithm=algorithm, dataset="glyphs", ways=self.ways, shots=self.shots, query=self.query,
            iterations=self.iterations, tasks_per_batch=self.tasks_per_batch, hidden=self.hidden, seed=self.seed,
            device="cpu",
            **changes,
        )  # fmt: skip


@dataclass
class MethodResult:
    """One method's training cost and test accuracy."""

    name: str
    iterations: int
    image_passes: int
    train_seconds: float
    result: EvaluationResult


def run_demo(config: DemoConfig, log: Callable[[str], None] = print, workers: int = 3) -> dict[str, Any]:
    """Train and test every method; return the report (`methods`, `paired`, settings) and `log` progress.

    With `workers` > 1 the methods run side by side in that many processes (spawned), one torch thread
    each: on 2 cores the three methods take about as long as two in a row. Each method's result depends
    only on the config (its own seeded streams), not on where or next to what it ran.
    """
    load_split("glyphs", None, "train")  # generated and cached once, before any worker reads it
    load_split("glyphs", None, "test")
    log(
        f"training {', '.join(METHODS)}: {config.iterations} iterations of {config.images_per_iteration} "
        f"images each, then {config.episodes} test episodes ({min(workers, len(METHODS))} process(es))..."
    )
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(METHODS)), mp_context=context) as pool:
            futures = [pool.submit(run_method, name, config, 1) for name in METHODS]
            results = [future.result() for future in futures]
    else:
        results = [run_method(name, config, config.threads) for name in METHODS]
    for result in results:
        log(f"  {result.name}: {result.result} after {result.train_seconds:.0f} s of training")
    return _report(config, results)


def run_method(name: str, config: DemoConfig, threads: int = 0) -> MethodResult:
    """Train one method for the demo's budget and score it on the test episodes (`threads` > 0: that many
    torch threads)."""
    if threads:
        torch.set_num_threads(threads)
    train = load_split("glyphs", None, "train", rotations=1)
    test = EpisodeSampler(
        load_split("glyphs", None, "test", rotations=1), config.ways, config.shots, config.query
    )
    start = time.perf_counter()
    trainer, adapter, steps, passes = _build(name, config, train)
    trainer.fit(config.iterations)
    seconds = time.perf_counter() - start
    result = evaluate(trainer.model, adapter, test, episodes=config.episodes, steps=steps, seed=config.seed)
    return MethodResult(name, config.iterations, config.iterations * passes, seconds, result)


def _build(
    name: str, config: DemoConfig, train: ClassDataset
) -> tuple[MetaTrainer, Adapter, int | None, int]:
    """The trainer, the test-time adapter, its inner steps and the image passes per iteration of one method."""
    if name == "baseline":
        model = conv4(
            train.num_classes, hidden=config.hidden, generator=torch.Generator().manual_seed(config.seed)
        )
        per_class = config.images_per_iteration // config.batch_classes
        trainer = MetaTrainer(
            model, "baseline", ClassBatchSampler(train, config.batch_classes, per_class), loss_fn=F.cross_entropy,
            device="cpu", config=TrainerConfig(tasks_per_batch=1, seed=config.seed, progress=False),
        )  # fmt: skip
        return (
            trainer,
            HeadFinetune(config.finetune_steps, config.finetune_lr),
            None,
            config.images_per_iteration,
        )
    if name == "maml":
        fewshot = config.fewshot("maml", inner_lr=config.maml_inner_lr, inner_steps=1)
        steps: int | None = config.maml_test_steps
    else:
        fewshot = config.fewshot(name)
        steps = None
    trainer = make_trainer(fewshot, EpisodeSampler(train, config.ways, config.shots, config.query))
    trainer.config.progress = False
    trainer.config.checkpoint_every = 0
    return trainer, trainer.algorithm, steps, passes_per_iteration(fewshot)


def _report(config: DemoConfig, results: list[MethodResult]) -> dict[str, Any]:
    """Per method accuracy +- 95 % CI; per meta-learner the paired difference with the baseline over the same
    episodes (mean +- 1.96 sd / sqrt(E)) and a verdict that follows that interval."""
    by_name = {r.name: r for r in results}
    baseline = torch.tensor(by_name["baseline"].result.accuracies, dtype=torch.float64)
    methods = {
        r.name: {
            "accuracy": r.result.accuracy,
            "ci95": r.result.ci95,
            "iterations": r.iterations,
            "image_passes": r.image_passes,
            "train_seconds": r.train_seconds,
        }
        for r in results
    }
    paired = {}
    for r in results:
        if r.name == "baseline":
            continue
        difference = torch.tensor(r.result.accuracies, dtype=torch.float64) - baseline
        mean, ci = float(difference.mean()), confidence95(difference)
        verdict = (
            f"{r.name} better"
            if mean - ci > 0
            else "baseline better"
            if mean + ci < 0
            else "not distinguishable"
        )
        paired[r.name] = {"mean": mean, "ci95": ci, "verdict": verdict}
    return {
        "settings": dataclasses.asdict(config),
        "episodes": config.episodes,
        "methods": methods,
        "paired_vs_baseline": paired,
    }


def format_report(report: dict[str, Any]) -> str:
    """The demo's table, as printed."""
    settings = report["settings"]
    lines = [
        f"{settings['ways']}-way {settings['shots']}-shot glyphs, {report['episodes']} test episodes "
        "(unseen classes), 95 % intervals",
        f"{'method':10s} {'accuracy':>18s} {'image passes':>13s} {'train s':>8s}",
    ]
    for name, row in report["methods"].items():
        lines.append(
            f"{name:10s} {row['accuracy']:8.3f} ± {row['ci95']:.3f}    {row['image_passes']:13d} "
            f"{row['train_seconds']:8.0f}"
        )
    for name, row in report["paired_vs_baseline"].items():
        lines.append(
            f"{name} - baseline: {row['mean']:+.3f} ± {row['ci95']:.3f} (paired over the same episodes): "
            f"{row['verdict']}"
        )
    return "\n".join(lines)
