"""The demo: on the embedded synthetic database, a MetaIQA prior against the plain-Adam baseline.

Both priors see the same training distortion types and the same number of images per iteration, then are
tested on distortion types neither saw: zero-shot, and after a few fine-tuning steps on half of a held-out
type's contents (tested on the other half). Sized to finish in minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalearn.logger import read_metrics
from metalearn_iqa.data.distortions import DISTORTIONS
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.data.synthetic import SyntheticConfig, default_root, load_synthetic
from metalearn_iqa.images import ImageStore
from metalearn_iqa.inference import EvalConfig, FinetuneConfig, evaluate_records, finetune
from metalearn_iqa.model import ModelConfig
from metalearn_iqa.plots import scatter_plot, srocc_bars, training_curves
from metalearn_iqa.prior import PRIOR_FILE, PriorConfig, load_prior, train_prior
from metalearn_iqa.protocols.report import markdown_table, write_report
from metalearn_iqa.tasks import TaskConfig, split_by_reference


@dataclass
class DemoConfig:
    """A small but complete run: 3 held-out KADID types (one blur, one compression, one noise)."""

    held_out: tuple[int, ...] = (3, 10, 13)  # motion blur, JPEG, impulse noise
    algorithms: tuple[str, ...] = ("metaiqa", "baseline")
    iterations: int = 50
    tasks_per_batch: int = 3
    inner_steps: int = 3
    inner_lr: float = 1e-3
    outer_lr: float = 1e-3
    crop: int = 64
    batch_size: int = 8
    finetune_steps: int = 20
    seed: int = 0
    threads: int = 2
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def prior(self, algorithm: str) -> PriorConfig:
        return PriorConfig(
            algorithm=algorithm,
            iterations=self.iterations,
            tasks_per_batch=self.tasks_per_batch,
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            outer_lr=self.outer_lr,
            lr_decay_every=max(1, self.iterations // 3),
            seed=self.seed,
            device="cpu",
            threads=self.threads,
            task=TaskConfig(crop=self.crop, batch_size=self.batch_size, batches=self.inner_steps),
            model=ModelConfig(pretrained="none"),
        )


def _type_name(kind: int) -> str:
    return next(d.name for d in DISTORTIONS if d.index == kind)


def score_held_out(
    model: torch.nn.Module, groups: dict[int, list[IQARecord]], config: DemoConfig, store: ImageStore
) -> dict[str, Any]:
    """Zero-shot SROCC on all of each held-out type, and SROCC after fine-tuning on half of its contents."""
    eval_config = EvalConfig(crop=config.crop, crops=5)
    out: dict[str, Any] = {"zero_shot": {}, "finetuned": {}, "pred": [], "true": []}
    for kind, records in groups.items():
        metrics, _ = evaluate_records(model, records, eval_config, store)
        out["zero_shot"][kind] = metrics["srocc"]
        adapt, test = split_by_reference(records, 0.5, torch.Generator().manual_seed(config.seed + kind))
        ft = FinetuneConfig(
            steps=config.finetune_steps,
            lr=config.inner_lr,
            batch_size=config.batch_size,
            crop=config.crop,
            seed=config.seed,
        )
        metrics, pred = evaluate_records(finetune(model, adapt, ft, store), test, eval_config, store)
        out["finetuned"][kind] = metrics["srocc"]
        out["pred"].extend(pred.tolist())
        out["true"].extend(r.score for r in test)
    return out


def run_demo(config: DemoConfig, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Generate (or reuse) the synthetic database, train both priors, compare them, write plots and tables."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    records = load_synthetic(default_root(config.synthetic), config.synthetic)
    store = ImageStore(capacity=len(records) + 16)
    train = [r for r in records if r.distortion not in config.held_out]
    groups = {k: [r for r in records if r.distortion == k] for k in config.held_out}
    print(
        f"synthetic database: {len(records)} images; training on {len(train)} "
        f"({len({r.distortion for r in train})} types), holding out {', '.join(map(_type_name, config.held_out))}"
    )
    results: dict[str, Any] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for algorithm in config.algorithms:
        run_dir = out_dir / f"prior-{algorithm}"
        t0 = time.perf_counter()
        if resume and (run_dir / PRIOR_FILE).is_file():
            model = load_prior(run_dir)
        else:
            model, _ = train_prior(config.prior(algorithm), train, run_dir, resume=resume, store=store)
        train_s = time.perf_counter() - t0
        rows = read_metrics(run_dir / "checkpoint")
        curves[algorithm] = [(int(r["iteration"]), r["loss"]) for r in rows]
        results[algorithm] = score_held_out(model, groups, config, store) | {"train_seconds": train_s}
    table = _table(results, config)
    _plots(results, curves, config, out_dir)
    summary = {
        "config": dataclasses.asdict(config),
        "results": {a: {k: v for k, v in r.items() if k not in ("pred", "true")} for a, r in results.items()},
        "seconds": time.perf_counter() - started,
    }
    write_report(summary, table, out_dir, "demo")
    summary["table"] = table + f"\n\nplots, tables and priors in {out_dir}/ ({summary['seconds']:.0f} s)"
    return summary


def _table(results: dict[str, Any], config: DemoConfig) -> str:
    rows = []
    for kind in config.held_out:
        rows.append(
            [f"{kind} {_type_name(kind)}"]
            + [
                f"{results[a]['zero_shot'][kind]:.3f} / {results[a]['finetuned'][kind]:.3f}"
                for a in config.algorithms
            ]
        )
    rows.append(
        ["mean"]
        + [
            f"{np.mean(list(results[a]['zero_shot'].values())):.3f} / {np.mean(list(results[a]['finetuned'].values())):.3f}"
            for a in config.algorithms
        ]
    )
    header = ["held-out type"] + [f"{a} SROCC (zero-shot / fine-tuned)" for a in config.algorithms]
    return markdown_table(header, rows)


def _plots(
    results: dict[str, Any], curves: dict[str, list[tuple[int, float]]], config: DemoConfig, out: Path
) -> None:
    pairs = {a: (np.asarray(r["pred"]), np.asarray(r["true"])) for a, r in results.items()}
    scatter_plot(
        pairs,
        None,
        out / "scatter.png",
        title="held-out types after fine-tuning",
        labels=("true score", "predicted score"),
    )
    per_type = {
        f"{k} {_type_name(k)}": {a: results[a]["finetuned"][k] for a in config.algorithms}
        for k in config.held_out
    }
    srocc_bars(per_type, out / "srocc_per_type.png")
    training_curves(curves, out / "training_curves.png")
