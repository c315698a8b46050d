"""The demo: on the embedded synthetic database, does a quality prior learn, and does meta-learning help?

Design (sized for `make demo` on a 2-core CPU in under 10 minutes, generation included):
- The reference images (contents) are split in two by a seeded draw: A (training contents) and B (test
  contents). No content is on both sides.
- Every prior trains on the training distortion types x A with the compact CNN from scratch, for the same
  number of forward+backward passes (`epochs` of the training images; printed).
- Seen types: pooled and per-type SROCC on the training types x B, the test of what a prior learned.
- Held-out types (never seen in training), x B: zero-shot, and after fine-tuning on that type x A.
- The plain baseline's Adam rate is chosen among a few candidates on a validation split of A (never on B).
  MetaIQA's outer rate (1e-3) was chosen the same way, by a longer search on the same validation split
  (docs/results.md); a search inside the demo's budget is too short for MetaIQA to learn (its candidates
  scored -0.06 to 0.00), so the demo does not repeat it. The other settings are fixed in `DemoConfig`
  (docs/results.md says how they were found).
- Everything over `seeds` (each seed its own content split, initialisation and sampling), mean and spread.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn import DivergedError
from metalearn.logger import read_metrics
from metalearn_iqa.data.distortions import DISTORTIONS
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.data.synthetic import SyntheticConfig, default_root, load_synthetic
from metalearn_iqa.images import ImageStore
from metalearn_iqa.inference import EvalConfig, FinetuneConfig, evaluate_records, finetune, predict_records
from metalearn_iqa.metrics import srocc
from metalearn_iqa.model import ModelConfig
from metalearn_iqa.plots import scatter_plot, srocc_bars, training_curves
from metalearn_iqa.prior import PRIOR_FILE, PriorConfig, load_prior, train_prior
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report
from metalearn_iqa.tasks import split_by_reference


@dataclass
class DemoConfig:
    """The demo's protocol and budget: 3 held-out KADID types (one blur, one compression, one noise)."""

    held_out: tuple[int, ...] = (3, 10, 13)  # motion blur, JPEG, impulse noise
    algorithms: tuple[str, ...] = ("metaiqa", "baseline")
    seeds: tuple[int, ...] = (0, 1)
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
    signal: str = "query_gradient"
    rate_candidates: dict[str, tuple[float, ...]] = field(default_factory=lambda: {"baseline": (3e-4, 1e-3)})
    search_fraction: float = 1 / 4
    validation_fraction: float = 0.25
    content_fraction: float = 0.5
    crop: int = 64
    batch_size: int = 16
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    threads: int = 2
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="small", hidden=128, norm="none"))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

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
        from metalearn_iqa.tasks import TaskConfig

        plain = algorithm == "baseline"
        lr = rate if plain and rate is not None else self.inner_lr
        outer_optimizer, outer_lr = ("adam", lr) if plain else self.outer[algorithm]
        if rate is not None and not plain:
            outer_lr = rate
        k = self.inner_steps_for.get(algorithm, self.inner_steps)
        return PriorConfig(
            algorithm=algorithm,
            epochs=self.epochs,
            tasks_per_batch=self.tasks_per_batch,
            inner_steps=k,
            inner_lr=lr,
            outer_lr=outer_lr,
            outer_optimizer=outer_optimizer,
            weight_decay=0.0,
            lr_decay_epochs=max(1.0, self.epochs / 3),
            signal=self.signal,
            seed=seed,
            device="cpu",
            threads=self.threads,
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


def _type_name(kind: int) -> str:
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
                model = _prior(prior, fit, run_dir, store, resume, overwrite)
            except DivergedError:
                scores[algorithm][f"{rate:g}"] = None  # a rate that diverges is never chosen
                continue
            metrics, _ = evaluate_records(model, validation, EvalConfig(), store)
            scores[algorithm][f"{rate:g}"] = metrics["srocc"]
        rates[algorithm] = _best_rate(algorithm, scores[algorithm])
    return rates, scores


def _prior(
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


def _best_rate(algorithm: str, scores: dict[str, float | None]) -> float:
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
        out["zero_shot"][kind] = _defined(evaluate_records(model, test, EvalConfig(), store)[0]["srocc"])
        metrics, pred = evaluate_records(
            finetune(model, split.adapt[kind], ft, store), test, EvalConfig(), store
        )
        out["finetuned"][kind] = _defined(metrics["srocc"])
        out["pred"].extend(pred.tolist())
        out["true"].extend(r.score for r in test)
    return out


def _defined(value: float | None) -> float:
    """An undefined correlation (None: constant predictions) as NaN, so means over it stay undefined."""
    return math.nan if value is None else value


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return mean_std(values)


def _f3(value: float) -> str:
    """Three decimals, or "undefined" for a NaN (a correlation of constant predictions)."""
    return "undefined" if math.isnan(value) else f"{value:.3f}"


def run_demo(
    config: DemoConfig,
    out_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    store: ImageStore | None = None,
) -> dict[str, Any]:
    """Generate (or reuse) the database, choose the baseline's rate, train every prior per seed, compare.

    `resume` reuses finished priors and continues interrupted ones; `overwrite` retrains over old runs.
    """
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    records = load_synthetic(default_root(config.synthetic), config.synthetic)
    store = store if store is not None else ImageStore(capacity=len(records) + 16)
    first = split_contents(records, config, config.seeds[0])
    print(
        f"synthetic database: {len(records)} images, {len({r.reference for r in records})} contents; "
        f"priors train on {len(first.train)} ({len({r.distortion for r in first.train})} types x half the "
        f"contents); held out: {', '.join(map(_type_name, config.held_out))}"
    )
    rates, search = choose_rates(first.train, config, out_dir / "rate-search", store, resume, overwrite)
    for algorithm, rate in rates.items():
        tried = ", ".join(
            f"{k}: {'diverged' if v is None else f'{v:.3f}'}" for k, v in search[algorithm].items()
        )
        print(f"{algorithm}: rate {rate:g}, chosen on validation contents (SROCC {tried})")

    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in config.algorithms}
    curves: dict[str, list[tuple[int, float]]] = {}
    for seed in config.seeds:
        split = first if seed == config.seeds[0] else split_contents(records, config, seed)
        priors = config.priors(seed, len(split.train), rates)
        for algorithm, prior in priors.items():
            run_dir = out_dir / f"seed{seed}" / f"prior-{algorithm}"
            t0 = time.perf_counter()
            model = _prior(prior, split.train, run_dir, store, resume, overwrite)
            train_s = time.perf_counter() - t0
            result = evaluate_prior(model, split, config, seed, store)
            result |= {"seed": seed, "train_seconds": train_s, "passes": prior.passes(len(split.train))}
            runs[algorithm].append(result)
            if seed == config.seeds[0]:
                rows = read_metrics(run_dir / "checkpoint")
                per = prior.passes_per_iteration()
                curves[algorithm] = [(int(r["iteration"]) * per, r["loss"]) for r in rows]
            print(
                f"seed {seed} {algorithm}: seen-type SROCC {_f3(result['seen_srocc'])}, held-out types "
                f"zero-shot {_f3(float(np.mean(list(result['zero_shot'].values()))))}, fine-tuned "
                f"{_f3(float(np.mean(list(result['finetuned'].values()))))} ({train_s:.0f} s)"
            )
    summary = _summarise(runs, config)
    table = _table(summary, config)
    _plots(runs, curves, config, out_dir)
    report = {
        "config": dataclasses.asdict(config),
        "rates": rates,
        "rate_search": search,
        "results": summary,
        "runs": {
            a: [{k: v for k, v in r.items() if k not in ("pred", "true")} for r in rs]
            for a, rs in runs.items()
        },
        "seconds": time.perf_counter() - started,
    }
    write_report(report, table, out_dir, "demo")
    report["table"] = table + f"\n\nplots, tables and priors in {out_dir}/ ({report['seconds']:.0f} s)"
    return report


def _summarise(runs: dict[str, list[dict[str, Any]]], config: DemoConfig) -> dict[str, dict[str, Any]]:
    """Per algorithm: means over seeds (and their spread) of the demo's readings, and the passes spent."""
    summary: dict[str, dict[str, Any]] = {}
    for algorithm, rs in runs.items():
        seen = [r["seen_srocc"] for r in rs]
        zero = [float(np.mean(list(r["zero_shot"].values()))) for r in rs]
        tuned = [float(np.mean(list(r["finetuned"].values()))) for r in rs]
        summary[algorithm] = {
            "seen_srocc": _mean_std(seen)[0],
            "seen_srocc_std": _mean_std(seen)[1],
            "unseen_srocc_zero_shot": _mean_std(zero)[0],
            "unseen_srocc_zero_shot_std": _mean_std(zero)[1],
            "unseen_srocc_finetuned": _mean_std(tuned)[0],
            "unseen_srocc_finetuned_std": _mean_std(tuned)[1],
            "unseen_finetuned_per_seed": tuned,
            "per_type_finetuned": {k: _mean_std([r["finetuned"][k] for r in rs])[0] for k in config.held_out},
            "per_type_zero_shot": {k: _mean_std([r["zero_shot"][k] for r in rs])[0] for k in config.held_out},
            "passes": rs[0]["passes"],
            "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
        }
    return summary


def verdict(summary: dict[str, dict[str, Any]], meta: str = "metaiqa", base: str = "baseline") -> str:
    """In words: is the meta-learner's fine-tuned advantage on held-out types larger than the seed spread?"""
    if meta not in summary or base not in summary:
        return ""
    diffs = [
        m - b
        for m, b in zip(
            summary[meta]["unseen_finetuned_per_seed"], summary[base]["unseen_finetuned_per_seed"]
        )
    ]
    mean, spread = _mean_std(diffs)
    if math.isnan(mean):
        return f"{meta} - {base} on held-out types after fine-tuning: undefined (a prior predicts one score for all)."
    if len(diffs) < 2:
        return f"{meta} - {base} on held-out types after fine-tuning: {mean:+.3f} (one seed: no spread to judge by)."
    larger = abs(mean) > spread
    who = meta if mean > 0 else base
    return (
        f"{meta} - {base} on held-out types after fine-tuning: {mean:+.3f} (mean over {len(diffs)} seeds), "
        f"seed spread (std of the per-seed differences) {spread:.3f}: "
        + (
            f"the difference is larger than the spread, in favour of {who}."
            if larger
            else "the difference is NOT larger than the spread, so this demo does not show that either prior "
            "fine-tunes better."
        )
    )


def _table(summary: dict[str, dict[str, Any]], config: DemoConfig) -> str:
    def cell(alg: str, key: str) -> str:
        return f"{_f3(summary[alg][key])} ± {_f3(summary[alg][key + '_std'])}"

    rows = [
        [
            alg,
            str(summary[alg]["passes"]),
            cell(alg, "seen_srocc"),
            cell(alg, "unseen_srocc_zero_shot"),
            cell(alg, "unseen_srocc_finetuned"),
        ]
        + [_f3(summary[alg]["per_type_finetuned"][k]) for k in config.held_out]
        for alg in summary
    ]
    header = [
        "prior",
        "passes",
        "seen types (held-out contents)",
        "held-out types, zero-shot",
        "held-out types, fine-tuned",
    ] + [f"{k} {_type_name(k)} (fine-tuned)" for k in config.held_out]
    note = f"SROCC, mean ± std over seeds {list(config.seeds)}."
    return markdown_table(header, rows) + f"\n\n{note}\n{verdict(summary)}"


def _plots(
    runs: dict[str, list[dict[str, Any]]],
    curves: dict[str, list[tuple[int, float]]],
    config: DemoConfig,
    out: Path,
) -> None:
    pairs = {a: (np.asarray(rs[0]["pred"]), np.asarray(rs[0]["true"])) for a, rs in runs.items()}
    scatter_plot(
        pairs,
        None,
        out / "scatter.png",
        title=f"held-out types after fine-tuning (seed {config.seeds[0]})",
        labels=("true score", "predicted score"),
    )
    per_type = {
        f"{k} {_type_name(k)}": {a: float(np.mean([r["finetuned"][k] for r in rs])) for a, rs in runs.items()}
        for k in config.held_out
    }
    srocc_bars(per_type, out / "srocc_per_type.png")
    training_curves(curves, out / "training_curves.png")
