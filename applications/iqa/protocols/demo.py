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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn.logger import read_metrics
from metalearn_iqa.data.synthetic import default_root, load_synthetic
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.protocols.heldout import (
    DemoConfig,
    choose_rates,
    evaluate_prior,
    split_contents,
    train_or_reuse,
    type_name,
)
from metalearn_iqa.protocols.plots import scatter_plot, srocc_bars, training_curves
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report


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
        f"contents); held out: {', '.join(map(type_name, config.held_out))}"
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
            model = train_or_reuse(prior, split.train, run_dir, store, resume, overwrite)
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
    ] + [f"{k} {type_name(k)} (fine-tuned)" for k in config.held_out]
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
        f"{k} {type_name(k)}": {a: float(np.mean([r["finetuned"][k] for r in rs])) for a, rs in runs.items()}
        for k in config.held_out
    }
    srocc_bars(per_type, out / "srocc_per_type.png")
    training_curves(curves, out / "training_curves.png")
