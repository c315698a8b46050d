"""The demo's protocol, shared by `demo` and `benchmarks/qpt.py`: content splits, held-out distortion types,
each prior trained (or reused) at equal passes, then read on seen types, zero-shot and after fine-tuning.

The design and its reasons are in `metalearn_iqa.protocols.demo`'s docstring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn import DivergedError
from metalearn.algorithms import algorithm_class
from metalearn_iqa.data.distortions import DISTORTIONS
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.data.splits import split_by_reference
from metalearn_iqa.data.synthetic import SyntheticConfig
from metalearn_iqa.evaluation.metrics import srocc
from metalearn_iqa.evaluation.predict import EvalConfig, evaluate_records, predict_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.protocols.adaptation import AdaptationConfig
from metalearn_iqa.training.finetune import FinetuneConfig, finetune
from metalearn_iqa.training.prior import (
    PRIOR_FILE,
    SIGNALS,
    PriorConfig,
    load_prior,
    prior_trainer,
    train_prior,
)
from metalearn_iqa.training.tasks import TaskConfig


@dataclass
class DemoConfig:
    """The demo's protocol and budget: 3 held-out KADID types (one blur, one compression, one noise)."""

    held_out: tuple[int, ...] = (3, 10, 13)  # motion blur, JPEG, impulse noise
    algorithms: tuple[str, ...] = ("metaiqa", "baseline")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: float = 6.0
    tasks_per_batch: int = 1
    inner_steps: int = 1
    inner_steps_for: dict[str, int] = field(default_factory=lambda: {"fomaml": 2})
    inner_lr: float = 1e-3
    outer: dict[str, tuple[str, float]] = field(
        default_factory=lambda: {
            "metaiqa": ("adam", 1e-3),
            "reptile": ("adam", 2e-3),
            "fomaml": ("adam", 2e-3),
            "maml": ("adam", 2e-3),
            "pooled-baseline": ("adam", 2e-3),
        }
    )
    signal: str = "query_gradient"  # MetaIQA's per-task signal (the other algorithms have their own)
    rate_candidates: dict[str, tuple[float, ...]] = field(default_factory=lambda: {"baseline": (3e-4, 1e-3)})
    search_fraction: float = 1 / 4
    validation_fraction: float = 0.25
    content_fraction: float = 0.5
    crop: int = 64
    batch_size: int = 16
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    shots: tuple[int, ...] = (0, 5, 10, 20)  # the adaptation curve: n labelled images of a held-out type
    adapt_steps: int = 20  # fine-tuning Adam steps at every n, for every prior
    adapt_lr_candidates: tuple[float, ...] = (3e-4, 1e-3)  # chosen per type on the other types' validation
    threads: int = 1
    workers: int = 2  # seeds trained at once (processes of `threads` threads each)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="small", hidden=128, norm="none"))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if self.threads < 1 or self.workers < 1:
            raise ValueError(f"threads and workers must be >= 1, got {self.threads} and {self.workers}")
        self.adaptation()  # refuses shots, steps or rates it cannot honour, before any training

    def adaptation(self) -> AdaptationConfig:
        """The adaptation-curve protocol on the held-out types (`metalearn_iqa.protocols.adaptation`)."""
        return AdaptationConfig(
            held_out=self.held_out,
            shots=self.shots,
            steps=self.adapt_steps,
            batch_size=self.batch_size,
            lr_candidates=self.adapt_lr_candidates,
            validation_fraction=self.validation_fraction,
            crop=self.crop,
        )

    def finetune_config(self, seed: int) -> FinetuneConfig:
        """How a prior is fine-tuned on each held-out type's adaptation contents."""
        return FinetuneConfig(
            epochs=self.finetune_epochs,
            lr=self.finetune_lr,
            batch_size=self.batch_size,
            crop=self.crop,
            seed=seed,
        )

    def prior(self, algorithm: str, seed: int, rate: float | None = None) -> PriorConfig:
        """The prior run of `algorithm` at `epochs`. `rate` (chosen on validation data) replaces the
        baseline's Adam rate or a meta-learner's outer rate."""
        plain = algorithm == "baseline"
        lr = rate if plain and rate is not None else self.inner_lr
        outer_optimizer, outer_lr = ("adam", lr) if plain else self.outer[algorithm]
        if rate is not None and not plain:
            outer_lr = rate
        k = self.inner_steps_for.get(algorithm, self.inner_steps)
        return PriorConfig(
            algorithm=algorithm,
            epochs=self.epochs,
            inner_steps=k,
            inner_lr=lr,
            lr_decay_epochs=max(1.0, self.epochs / 3),
            signal=self.signal if algorithm_class(algorithm).name == "metaiqa" else SIGNALS[0],
            device="cpu",
            threads=self.threads,
            trainer=prior_trainer(
                tasks_per_batch=self.tasks_per_batch,
                outer_lr=outer_lr,
                outer_optimizer=outer_optimizer,
                weight_decay=0.0,
                seed=seed,
            ),
            task=TaskConfig(crop=self.crop, batch_size=self.batch_size, batches=k),
            model=self.model,
        )

    def priors(
        self, seed: int, n_images: int, rates: dict[str, float] | None = None
    ) -> dict[str, PriorConfig]:
        """Every algorithm's prior run at exactly the same passes: `epochs` of `n_images`, rounded to a
        multiple of every algorithm's passes per iteration."""
        rates = rates or {}
        configs = {a: self.prior(a, seed, rates.get(a)) for a in self.algorithms}
        step = math.lcm(*(c.passes_per_iteration() for c in configs.values()))
        passes = max(
            step, round(self.epochs * configs[self.algorithms[0]].passes_per_epoch(n_images) / step) * step
        )
        return {
            a: dataclasses.replace(c, iterations=passes // c.passes_per_iteration())
            for a, c in configs.items()
        }


def type_name(kind: int) -> str:
    return next(d.name for d in DISTORTIONS if d.index == kind)


@dataclass
class Split:
    """One seed's content split: training contents A and test contents B, per side of the type split."""

    train: list[IQARecord]  # training types x A
    seen_test: list[IQARecord]  # training types x B
    adapt: dict[int, list[IQARecord]]  # held-out type x A (fine-tuning data)
    unseen_test: dict[int, list[IQARecord]]  # held-out type x B


def split_contents(records: Sequence[IQARecord], config: DemoConfig, seed: int) -> Split:
    """Split by reference (content) with a seeded draw, then by distortion type."""
    a, b = split_by_reference(records, config.content_fraction, torch.Generator().manual_seed(seed))
    held = set(config.held_out)
    return Split(
        train=[r for r in a if r.distortion not in held],
        seen_test=[r for r in b if r.distortion not in held],
        adapt={k: [r for r in a if r.distortion == k] for k in config.held_out},
        unseen_test={k: [r for r in b if r.distortion == k] for k in config.held_out},
    )


def choose_rates(
    train: list[IQARecord],
    config: DemoConfig,
    out_dir: Path,
    store: ImageStore,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[dict[str, float], dict[str, dict[str, float | None]]]:
    """Each searched algorithm's rate with the best SROCC on a validation split of the training contents.

    Short runs (`search_fraction` of the budget) on the rest of the training contents; the test contents
    are never looked at. A rate whose run diverges scores None and is never chosen.
    """
    fit, validation = split_by_reference(
        train, 1.0 - config.validation_fraction, torch.Generator().manual_seed(12345)
    )
    rates: dict[str, float] = {}
    scores: dict[str, dict[str, float | None]] = {}
    for algorithm, candidates in config.rate_candidates.items():
        if algorithm not in config.algorithms:
            continue
        scores[algorithm] = {}
        for rate in candidates:
            prior = dataclasses.replace(
                config.prior(algorithm, seed=0, rate=rate), epochs=config.epochs * config.search_fraction
            )
            run_dir = out_dir / f"{algorithm}-{rate:g}"
            try:
                model = train_or_reuse(prior, fit, run_dir, store, resume, overwrite)
            except DivergedError:
                scores[algorithm][f"{rate:g}"] = None  # a rate that diverges is never chosen
                continue
            metrics, _ = evaluate_records(model, validation, EvalConfig(), store)
            scores[algorithm][f"{rate:g}"] = metrics["srocc"]
        rates[algorithm] = best_rate(algorithm, scores[algorithm])
    return rates, scores


def train_or_reuse(
    prior: PriorConfig,
    records: list[IQARecord],
    run_dir: Path,
    store: ImageStore,
    resume: bool,
    overwrite: bool,
) -> torch.nn.Module:
    """With `resume`, a prior already finished in `run_dir`; otherwise (or if unfinished) train it there."""
    if resume and (run_dir / PRIOR_FILE).is_file():
        return load_prior(run_dir)
    return train_prior(prior, records, run_dir, resume=resume, store=store, overwrite=overwrite)[0]


def best_rate(algorithm: str, scores: dict[str, float | None]) -> float:
    """The rate with the best validation SROCC among those that did not diverge."""
    finite = {rate: score for rate, score in scores.items() if score is not None}
    if not finite:
        raise DivergedError(
            f"{algorithm}: training diverged at every candidate rate ({', '.join(scores)})", 0
        )
    return float(max(finite, key=lambda rate: finite[rate]))


def evaluate_prior(
    model: torch.nn.Module, split: Split, config: DemoConfig, seed: int, store: ImageStore
) -> dict[str, Any]:
    """Seen-type SROCC (pooled and per type), held-out types zero-shot and after fine-tuning."""
    seen_pred = predict_records(model, split.seen_test, EvalConfig(), store)
    seen_true = np.asarray([r.score for r in split.seen_test])
    kinds = np.asarray([r.distortion for r in split.seen_test])
    per_type = {int(k): srocc(seen_pred[kinds == k], seen_true[kinds == k]) for k in sorted(set(kinds))}
    out: dict[str, Any] = {
        "seen_srocc": srocc(seen_pred, seen_true),
        "seen_per_type": per_type,
        "zero_shot": {},
        "finetuned": {},
        "pred": [],
        "true": [],
    }
    ft = config.finetune_config(seed)
    for kind, test in split.unseen_test.items():
        out["zero_shot"][kind] = nan_if_undefined(
            evaluate_records(model, test, EvalConfig(), store)[0]["srocc"]
        )
        metrics, pred = evaluate_records(
            finetune(model, split.adapt[kind], ft, store), test, EvalConfig(), store
        )
        out["finetuned"][kind] = nan_if_undefined(metrics["srocc"])
        out["pred"].extend(pred.tolist())
        out["true"].extend(r.score for r in test)
    return out


def nan_if_undefined(value: float | None) -> float:
    """An undefined correlation (None: constant predictions) as NaN, so means over it stay undefined."""
    return math.nan if value is None else value
