"""MetaIQA's claim as a measurement: how fast does a prior adapt to a new distortion type from n labels?

For each held-out distortion type (never seen by the priors) and each n in `shots`, every prior is
fine-tuned on the same n labelled images of that type and scored (SROCC) on the type's test contents;
n = 0 is the prior itself (zero-shot). The protocol, per seed:

- Contents. The caller gives, per held-out type, its adaptation images (the training contents A) and its
  test images (the test contents B, disjoint). A seeded draw splits A's contents again: `validation_fraction`
  of them are the validation contents, the rest the pool the n labelled images come from. The n images
  are the first n of one seeded permutation of the pool, so the sets are nested (5 within 10 within 20 ...),
  and every prior gets exactly the same images, crops and batch order (a paired comparison).
- Budget. Every prior, at every n, gets `steps` Adam steps (betas 0.9, 0.99) of `min(n, batch_size)` random
  crops: the same compute whatever the prior or n.
- Learning rate, chosen on validation only. With several `lr_candidates`, each prior is fine-tuned at each
  rate, and the rate for type t is the one with the best mean validation SROCC over the *other* held-out
  types (their validation contents): no image of type t beyond its n labels, and no test image, decides
  anything. A rate whose run diverges scores NaN and is never chosen.

`adaptation_curve` returns plain data for one seed (`SeedCurve`); `summarise` turns several seeds into the
report's `adaptation` (per prior and n: mean over seeds of the mean over types, its t-based 95 % CI and
the per-seed values) and `paired` (per n: prior a - prior b, paired by seed) with verdicts that follow
the CI (`metalearn.stats.verdict`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metalearn import mse_loss
from metalearn.checkpoint import first_nonfinite
from metalearn.stats import mean_ci, paired, verdict
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.splits import split_by_reference
from metalearn_iqa.evaluation.metrics import srocc
from metalearn_iqa.evaluation.predict import EvalConfig, predict_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.training.tasks import CropBatches

__all__ = ["AdaptationConfig", "SeedCurve", "adaptation_curve", "adaptation_table", "summarise"]


@dataclass(frozen=True)
class AdaptationConfig:
    """The adaptation protocol's settings (see the module docstring); refuses what it cannot honour."""

    held_out: tuple[int, ...] = (3, 10, 13)
    shots: tuple[int, ...] = (0, 5, 10, 20, 40)
    steps: int = 40
    batch_size: int = 16
    lr_candidates: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    validation_fraction: float = 0.25
    crop: int = 64
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not self.held_out or len(set(self.held_out)) != len(self.held_out):
            raise ValueError(f"held_out must name distinct distortion types, got {self.held_out}")
        if not self.shots or any(n < 0 for n in self.shots) or len(set(self.shots)) != len(self.shots):
            raise ValueError(f"shots must be distinct numbers of images >= 0, got {self.shots}")
        if list(self.shots) != sorted(self.shots):
            raise ValueError(f"shots must be in increasing order, got {self.shots}")
        if any(n == 1 for n in self.shots):
            raise ValueError("shots: n = 1 cannot be fine-tuned on (one score ranks nothing); use 0 or >= 2")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(
                f"steps must be >= 1 and batch_size >= 2, got {self.steps} and {self.batch_size}"
            )
        if not self.lr_candidates or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lr_candidates):
            raise ValueError(f"lr_candidates must be positive rates, got {self.lr_candidates}")
        if len(self.lr_candidates) > 1 and len(self.held_out) < 2:
            raise ValueError(
                "choosing among lr_candidates needs at least 2 held-out types (a type's rate is chosen on "
                "the others' validation contents): give one rate or more held-out types"
            )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.crop < 32:
            raise ValueError(f"crop must be at least 32 pixels, got {self.crop}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def tuned_shots(self) -> tuple[int, ...]:
        """The n > 0 (fine-tuned); n = 0 is the zero-shot reading."""
        return tuple(n for n in self.shots if n > 0)


@dataclass
class SeedCurve:
    """One seed's readings: `srocc[prior][n][type]` on the test contents, the rate used at each
    (`lr[prior][n][type]`, None at n = 0) and every validation reading (`validation[prior][n][type][lr]`)."""

    seed: int
    srocc: dict[str, dict[int, dict[int, float]]] = field(default_factory=dict)
    lr: dict[str, dict[int, dict[int, float | None]]] = field(default_factory=dict)
    validation: dict[str, dict[int, dict[int, dict[float, float]]]] = field(default_factory=dict)

    def curve(self, prior: str) -> dict[int, float]:
        """Per n, the mean test SROCC over the held-out types (NaN if one type's is undefined)."""
        return {n: float(np.mean(list(by_type.values()))) for n, by_type in self.srocc[prior].items()}


def _test_srocc(model: nn.Module, records: Sequence[IQARecord], store: ImageStore) -> float:
    pred = predict_records(model, records, EvalConfig(), store)
    return srocc(pred, np.asarray([r.score for r in records]), warn=False)


def _finetuned(
    model: nn.Module,
    images: Sequence[IQARecord],
    lr: float,
    config: AdaptationConfig,
    seed: int,
    store: ImageStore,
) -> nn.Module | None:
    """A copy of `model` after `config.steps` Adam steps on `images`; None if a weight stops being finite."""
    tuned = copy.deepcopy(model)
    tuned.train()
    device = next(tuned.parameters()).device
    optimizer = torch.optim.Adam(
        tuned.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )
    batch = min(len(images), config.batch_size)
    for inputs, targets in CropBatches(images, store, config.crop, batch, config.steps, seed):
        loss = mse_loss(tuned(inputs.to(device)), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return None if first_nonfinite(tuned.state_dict()) is not None else tuned


def _labelled_pool(
    adapt: Sequence[IQARecord], config: AdaptationConfig, generator: torch.Generator
) -> tuple[list[IQARecord], list[IQARecord]]:
    """The adaptation images split by content into (n-image pool in a seeded order, validation images)."""
    pool, validation = split_by_reference(adapt, 1.0 - config.validation_fraction, generator)
    largest = max(config.shots)
    if len(pool) < largest:
        raise DatasetError(
            f"{len(pool)} images to draw n = {largest} labelled images from: fewer shots needed"
        )
    order = torch.randperm(len(pool), generator=generator).tolist()
    return [pool[i] for i in order], validation


def _choose(validation: Mapping[int, Mapping[float, float]], kind: int, candidates: Sequence[float]) -> float:
    """The rate with the best mean validation SROCC over the held-out types other than `kind` (NaN: never
    chosen; if every candidate is NaN, the first)."""
    others = [k for k in validation if k != kind]
    best, best_score = candidates[0], -math.inf
    for lr in candidates:
        scores = [validation[k][lr] for k in others]
        score = -math.inf if any(math.isnan(s) for s in scores) else float(np.mean(scores))
        if score > best_score:
            best, best_score = lr, score
    return best


def adaptation_curve(
    priors: Mapping[str, nn.Module],
    adapt: Mapping[int, Sequence[IQARecord]],
    test: Mapping[int, Sequence[IQARecord]],
    config: AdaptationConfig,
    seed: int,
    store: ImageStore | None = None,
) -> SeedCurve:
    """Zero-shot and n-shot test SROCC of every prior on every held-out type (the module docstring's protocol).

    `adapt[t]` and `test[t]` are type t's images on the training and test contents. The priors are not
    changed. Deterministic for a given seed, thread count and machine.
    """
    missing = [k for k in config.held_out if k not in adapt or k not in test]
    if missing:
        raise ValueError(f"no adaptation or test images for held-out type(s) {missing}")
    store = store if store is not None else ImageStore()
    pools: dict[int, tuple[list[IQARecord], list[IQARecord]]] = {}
    for kind in config.held_out:
        pools[kind] = _labelled_pool(adapt[kind], config, torch.Generator().manual_seed(seed * 1009 + kind))
    result = SeedCurve(seed)
    for name, prior in priors.items():
        result.srocc[name] = {n: {} for n in config.shots}
        result.lr[name] = {n: {} for n in config.shots}
        result.validation[name] = {}
        if 0 in config.shots:
            for kind in config.held_out:
                result.srocc[name][0][kind] = _test_srocc(prior, test[kind], store)
                result.lr[name][0][kind] = None
        for n in config.tuned_shots:
            models: dict[int, dict[float, nn.Module | None]] = {}
            validation: dict[int, dict[float, float]] = {}
            for kind in config.held_out:
                images = pools[kind][0][:n]
                crops_seed = seed * 100_003 + kind * 101 + n  # the same crops for every prior and rate
                models[kind] = {
                    lr: _finetuned(prior, images, lr, config, crops_seed, store)
                    for lr in config.lr_candidates
                }
                if len(config.lr_candidates) > 1:
                    validation[kind] = {
                        lr: math.nan if m is None else _test_srocc(m, pools[kind][1], store)
                        for lr, m in models[kind].items()
                    }
            result.validation[name][n] = validation
            for kind in config.held_out:
                lr = (
                    _choose(validation, kind, config.lr_candidates) if validation else config.lr_candidates[0]
                )
                tuned = models[kind][lr]
                result.lr[name][n][kind] = lr
                result.srocc[name][n][kind] = (
                    math.nan if tuned is None else _test_srocc(tuned, test[kind], store)
                )
    return result


def summarise(curves: Sequence[SeedCurve], a: str = "metaiqa", b: str = "baseline") -> dict[str, Any]:
    """Over seeds: `adaptation[prior][n]` and `paired[n]` (a - b), each `{"mean", "ci95", "per_seed"}`, and
    `verdicts[n]` ("<a> better", "<b> better" or "not distinguishable at this budget") from the paired CI.

    One value per seed: the mean over held-out types, which share that seed's priors and split. Priors
    missing `a` or `b` give no `paired` entries.
    """
    if not curves:
        raise ValueError("no seeds to summarise")
    priors = list(curves[0].srocc)
    shots = list(curves[0].srocc[priors[0]])
    per_seed = {p: {n: [c.curve(p)[n] for c in curves] for n in shots} for p in priors}
    report: dict[str, Any] = {
        "seeds": [c.seed for c in curves],
        "adaptation": {p: {n: mean_ci(per_seed[p][n]).as_dict() for n in shots} for p in priors},
        "paired": {},
        "verdicts": {},
    }
    if a in per_seed and b in per_seed:
        for n in shots:
            difference = paired(per_seed[a][n], per_seed[b][n])
            report["paired"][n] = difference.as_dict()
            report["verdicts"][n] = verdict(difference, a, b)
    return report


def adaptation_table(report: Mapping[str, Any], a: str = "metaiqa", b: str = "baseline") -> str:
    """Markdown: per n, each prior's mean ± 95 % CI half-width, the paired difference a - b and its verdict."""
    priors = list(report["adaptation"])

    def cell(entry: Mapping[str, Any]) -> str:
        mean, ci = entry["mean"], entry["ci95"]
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return "undefined"
        return f"{mean:.3f}" if ci is None or math.isnan(ci) else f"{mean:.3f} ± {ci:.3f}"

    header = ["n"] + priors + ([f"{a} - {b}", "verdict"] if report["paired"] else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in report["adaptation"][priors[0]]:
        row = [str(n)] + [cell(report["adaptation"][p][n]) for p in priors]
        if report["paired"]:
            row += [cell(report["paired"][n]), report["verdicts"][n]]
        lines.append("| " + " | ".join(row) + " |")
    seeds = report["seeds"]
    return "\n".join(lines) + (
        f"\n\nTest SROCC on the held-out types (mean over types), mean ± 95 % CI half-width (t, {len(seeds) - 1} "
        f"degrees of freedom) over seeds {seeds}; the difference is paired by seed."
    )


def adaptation_plot(report: Mapping[str, Any], out: str | Path, title: str = "") -> Path:
    """SROCC against n (categorical axis, so n = 0 shows), one line per prior with its 95 % CI band."""
    from metalearn_iqa.protocols.plots import _new_axes, _save

    fig, ax = _new_axes((6.4, 4.2))
    for prior, by_n in report["adaptation"].items():
        shots = list(by_n)
        x = np.arange(len(shots))
        mean = np.array([np.nan if by_n[n]["mean"] is None else by_n[n]["mean"] for n in shots], dtype=float)
        ci = np.array([np.nan if by_n[n]["ci95"] is None else by_n[n]["ci95"] for n in shots], dtype=float)
        (line,) = ax.plot(x, mean, marker="o", label=prior)
        ax.fill_between(x, mean - ci, mean + ci, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xticks(np.arange(len(shots)), [str(n) for n in shots])
    ax.set_xlabel("labelled images of the new distortion type (n)")
    ax.set_ylabel("SROCC on its test contents")
    ax.set_title(title or f"adaptation to held-out types, mean and 95 % CI over {len(report['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)
