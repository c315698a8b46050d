"""MetaIQA's claim, measured: does a meta-learned prior adapt faster to a new distortion type from n labels?

Per seed (its own content split, initialisation and sampling), on the embedded database with the demo's
content split (`metalearn_iqa.protocols.heldout.split_contents`): train every prior on the training types x the
training contents at exactly the same forward+backward passes (`DemoConfig.priors`), optionally all from
one shared plain-trained start (`--warm-start-epochs`, the CPU stand-in for the paper's ImageNet start),
score its seen-type SROCC on the test contents, then run the adaptation protocol of
`metalearn_iqa.protocols.adaptation` on the held-out types (n in `--shots`, the same images, budget and
validation-only rate choice for every prior). Over seeds: mean and t-based 95 % CI per prior and n, the
paired difference MetaIQA - baseline per n and a verdict that follows its CI.

Seeds run in parallel processes (`--jobs`, one thread each); each seed's readings go to
`OUT/seedN/readings.json` and are reused by a later run with the same settings. Writes `OUT/adaptation.json`
(the demo's schema: `results`, `seeds`, `adaptation`, `paired`, plus `verdicts`, per-seed readings and the
settings), `adaptation.md` and `adaptation.png` (SROCC against n, mean and 95 % CI bands).

python benchmarks/iqa_adaptation.py --seeds 0 1 2 3 4 --priors metaiqa baseline scratch --lr-candidates 3e-4 1e-3 \
    --jobs 2 --out runs/iqa-adaptation    # docs/results.md: what it measured
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn.checkpoint import atomic_write_text
from metalearn.stats import mean_ci, paired, verdict
from metalearn_iqa.data.synthetic import default_root, load_synthetic
from metalearn_iqa.evaluation.metrics import srocc
from metalearn_iqa.evaluation.predict import EvalConfig, predict_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import IQANet
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.protocols.adaptation import (
    AdaptationConfig,
    SeedCurve,
    adaptation_curve,
    adaptation_plot,
    adaptation_table,
    summarise,
)
from metalearn_iqa.protocols.heldout import DemoConfig, split_contents
from metalearn_iqa.protocols.report import write_report
from metalearn_iqa.training.prior import make_trainer

TRAINED = ("metaiqa", "baseline", "reptile", "fomaml", "maml")
"""Priors trained by an algorithm of the registry (at equal passes); `scratch` is the untrained start and
`warm-start` the shared plain-trained start (with `--warm-start-epochs`)."""
READINGS = "readings.json"


@dataclass
class Plan:
    """What one benchmark run measures: the priors' training (`demo`), the adaptation protocol, the
    priors compared and an optional shared warm start (plain training, in epochs of the training images)."""

    demo: DemoConfig
    adaptation: AdaptationConfig
    priors: tuple[str, ...] = ("metaiqa", "baseline", "scratch")
    warm_start_epochs: float = 0.0
    rates: dict[str, float] = field(default_factory=lambda: {"baseline": 1e-3})

    def __post_init__(self) -> None:
        unknown = [p for p in self.priors if p not in TRAINED + ("scratch", "warm-start")]
        if unknown:
            raise ValueError(f"unknown prior(s) {unknown}: choose from {TRAINED + ('scratch', 'warm-start')}")
        if "warm-start" in self.priors and self.warm_start_epochs <= 0:
            raise ValueError("the warm-start prior needs --warm-start-epochs > 0")
        if self.warm_start_epochs < 0:
            raise ValueError(f"warm_start_epochs must be >= 0, got {self.warm_start_epochs}")
        if set(self.demo.held_out) != set(self.adaptation.held_out):
            raise ValueError("the priors' held-out types and the adaptation's must be the same")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def seen_srocc(model: torch.nn.Module, records: list, store: ImageStore) -> float:
    """Pooled SROCC on the training types x the test contents (whole images)."""
    pred = predict_records(model, records, EvalConfig(), store)
    return srocc(pred, np.asarray([r.score for r in records]), warn=False)


def train_priors(plan: Plan, train: list, seed: int, store: ImageStore) -> tuple[dict[str, Any], dict]:
    """Every prior of the plan for one seed, and how each was trained (passes, updates, seconds)."""
    demo = plan.demo
    algorithms = tuple(p for p in plan.priors if p in TRAINED)
    configs = (
        dataclasses.replace(demo, algorithms=algorithms).priors(seed, len(train), plan.rates)
        if algorithms
        else {}
    )
    torch.manual_seed(seed)
    start = build_model(demo.model)  # what make_trainer builds for this seed: the common start
    info: dict[str, dict[str, Any]] = {}
    if plan.warm_start_epochs > 0:
        warm = dataclasses.replace(
            demo.prior("baseline", seed, plan.rates.get("baseline")), epochs=plan.warm_start_epochs
        )
        t0 = time.process_time()
        trainer = make_trainer(warm, train, store, model=copy.deepcopy(start))
        trainer.config.progress = False
        trainer.fit(warm.total_iterations(len(train)))
        assert isinstance(trainer.model, IQANet)
        start = trainer.model
        info["warm-start"] = {"passes": warm.passes(len(train)), "cpu_seconds": time.process_time() - t0}
    priors: dict[str, Any] = {}
    for name in plan.priors:
        if name == "scratch":
            torch.manual_seed(seed)
            priors[name] = build_model(demo.model)
            info[name] = {"passes": 0}
        elif name == "warm-start":
            priors[name] = start
        else:
            config = configs[name]
            t0 = time.process_time()
            trainer = make_trainer(config, train, store, model=copy.deepcopy(start))
            trainer.config.progress = False
            trainer.fit(config.total_iterations(len(train)))
            priors[name] = trainer.model
            info[name] = {
                "passes": config.passes(len(train)),
                "updates": config.total_iterations(len(train)),
                "cpu_seconds": time.process_time() - t0,
            }
    return priors, info


def run_seed(plan: Plan, seed: int, out: Path) -> dict[str, Any]:
    """One seed's readings (reused from `out/seedN/readings.json` when its settings match)."""
    path = out / f"seed{seed}" / READINGS
    settings = plan.to_dict()
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("plan") == settings:
            return old
    torch.set_num_threads(plan.demo.threads)
    records = load_synthetic(default_root(plan.demo.synthetic), plan.demo.synthetic)
    store = ImageStore(capacity=len(records) + 16)
    split = split_contents(records, plan.demo, seed)
    priors, info = train_priors(plan, split.train, seed, store)
    seen = {name: seen_srocc(m, split.seen_test, store) for name, m in priors.items() if name != "scratch"}
    t0 = time.process_time()
    curve = adaptation_curve(priors, split.adapt, split.unseen_test, plan.adaptation, seed, store)
    readings = {
        "plan": settings,
        "seed": seed,
        "seen_srocc": seen,
        "training": info,
        "adaptation_cpu_seconds": time.process_time() - t0,
        "curve": {"srocc": curve.srocc, "lr": curve.lr, "validation": curve.validation},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(readings, indent=1) + "\n")
    return json.loads(json.dumps(readings))  # the same (string-keyed) form as a reused file


def _curve(readings: dict[str, Any]) -> SeedCurve:
    """A `SeedCurve` back from its JSON form (keys n and type as ints)."""
    srocc_ = {
        p: {int(n): {int(k): float(v) for k, v in by_type.items()} for n, by_type in by_n.items()}
        for p, by_n in readings["curve"]["srocc"].items()
    }
    return SeedCurve(int(readings["seed"]), srocc_)


def report(plan: Plan, per_seed: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The demo's schema over seeds, and the printed tables."""
    curves = [_curve(r) for r in per_seed]
    summary = summarise(curves)
    top = max(plan.adaptation.shots)
    results: dict[str, dict[str, Any]] = {}
    for prior in plan.priors:
        seen = mean_ci([r["seen_srocc"][prior] for r in per_seed]) if prior != "scratch" else None
        entry = summary["adaptation"][prior]
        results[prior] = {
            "seen_srocc": None if seen is None else seen.mean,
            "seen_srocc_ci95": None if seen is None else seen.ci95,
            "seen_srocc_per_seed": None if seen is None else list(seen.values),
            "unseen_srocc_zero_shot": entry[0]["mean"] if 0 in entry else None,
            "unseen_srocc_finetuned": entry[top]["mean"],
            "finetuned_n": top,
            "passes": per_seed[0]["training"].get(prior, {}).get("passes"),
            "updates": per_seed[0]["training"].get(prior, {}).get("updates"),
        }
    lines = ["| prior | passes | outer updates | seen types (held-out contents) |", "|---|---|---|---|"]
    for prior, r in results.items():
        cell = "n/a" if r["seen_srocc"] is None else f"{r['seen_srocc']:.3f} ± {r['seen_srocc_ci95']:.3f}"
        lines.append(f"| {prior} | {r['passes']} | {r['updates'] or '-'} | {cell} |")
    text = "\n".join(lines)
    if "metaiqa" in plan.priors and "baseline" in plan.priors:
        difference = paired(
            results["metaiqa"]["seen_srocc_per_seed"], results["baseline"]["seen_srocc_per_seed"]
        )
        text += (
            f"\n\nseen types, metaiqa - baseline: {difference.mean:+.3f} ± {difference.ci95:.3f} "
            f"({verdict(difference, 'metaiqa', 'baseline')})"
        )
    text += "\n\n" + adaptation_table(summary)
    out = {
        "plan": plan.to_dict(),
        "seeds": summary["seeds"],
        "results": results,
        "adaptation": summary["adaptation"],
        "paired": summary["paired"],
        "verdicts": summary["verdicts"],
        "per_seed": per_seed,
    }
    return out, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--priors", nargs="+", default=["metaiqa", "baseline", "scratch"])
    parser.add_argument(
        "--epochs", type=float, default=6.0, help="Each trained prior's budget (epochs of passes)."
    )
    parser.add_argument("--warm-start-epochs", type=float, default=0.0, help="Shared plain start (0: none).")
    parser.add_argument("--held-out", type=int, nargs="+", default=[3, 10, 13])
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5, 10, 20, 40])
    parser.add_argument("--steps", type=int, default=40, help="Fine-tuning Adam steps, every prior and n.")
    parser.add_argument("--lr-candidates", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--tasks-per-batch", type=int, default=1)
    parser.add_argument("--outer-lr", type=float, default=1e-3, help="The meta-learners' outer Adam rate.")
    parser.add_argument(
        "--baseline-lr", type=float, default=1e-3, help="As the demo's validation search chose."
    )
    parser.add_argument("--jobs", type=int, default=2, help="Seeds run at once (one thread each).")
    parser.add_argument("--out", type=Path, default=Path("runs/iqa-adaptation"))
    args = parser.parse_args()

    base = DemoConfig()
    demo = dataclasses.replace(
        base,
        held_out=tuple(args.held_out),
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        tasks_per_batch=args.tasks_per_batch,
        inner_steps=args.inner_steps,
        outer={name: ("adam", args.outer_lr) for name in base.outer},
        threads=1,
    )
    plan = Plan(
        demo=demo,
        adaptation=AdaptationConfig(
            held_out=tuple(args.held_out),
            shots=tuple(args.shots),
            steps=args.steps,
            batch_size=demo.batch_size,
            lr_candidates=tuple(args.lr_candidates),
            crop=demo.crop,
        ),
        priors=tuple(args.priors),
        warm_start_epochs=args.warm_start_epochs,
        rates={"baseline": args.baseline_lr},
    )
    load_synthetic(default_root(demo.synthetic), demo.synthetic)  # generate once, before the workers start
    jobs = [(plan, seed, args.out) for seed in args.seeds]
    if args.jobs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            per_seed = pool.starmap(run_seed, jobs)
    else:
        per_seed = [run_seed(*job) for job in jobs]
    result, text = report(plan, per_seed)
    write_report(result, text, args.out, "adaptation")
    adaptation_plot(result, args.out / "adaptation.png")
    print(text)


if __name__ == "__main__":
    main()
