"""Leave-one-distortion-out (MetaIQA's Table 2): meta-train on all types but the held-out ones, test on those."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.images import ImageStore
from metalearn_iqa.inference import EvalConfig, FinetuneConfig, evaluate_records, finetune
from metalearn_iqa.prior import PriorConfig, train_prior
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report
from metalearn_iqa.tasks import group_by_distortion, split_by_reference


@dataclass
class LodoConfig:
    """`folds`: each fold is the tuple of types held out together (default: every type alone, the paper's way).

    With `finetune.steps > 0` each held-out type is split by reference: fine-tune on `finetune_fraction` of its
    contents, test on the rest (the paper's Table 2 uses no fine-tuning: test on all of the type's images).
    """

    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    folds: list[tuple[int, ...]] | None = None
    finetune: FinetuneConfig = dataclasses.field(default_factory=lambda: FinetuneConfig(steps=0))
    finetune_fraction: float = 0.5
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def _folds(records: Sequence[IQARecord], folds: list[tuple[int, ...]] | None) -> list[tuple[int, ...]]:
    types = sorted(group_by_distortion(records))
    if folds is None:
        return [(t,) for t in types]
    for fold in folds:
        unknown = set(fold) - set(types)
        if unknown:
            raise DatasetError(
                f"held-out distortion type(s) {sorted(unknown)} not in the database (types {types})"
            )
    return folds


def run_lodo(
    records: Sequence[IQARecord], config: LodoConfig, out_dir: str | Path, resume: bool = False
) -> dict[str, Any]:
    """Train one prior per fold and score each held-out type; returns per-type metrics and the mean SROCC."""
    out = Path(out_dir)
    store = ImageStore(capacity=max(4096, len(records)))
    per_type: dict[str, dict[str, float]] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    groups = group_by_distortion(records)
    for fold in _folds(records, config.folds):
        tag = "-".join(f"{t:02d}" for t in fold)
        train = [r for r in records if r.distortion not in fold]
        model, rows = train_prior(config.prior, train, out / f"fold-{tag}", resume=resume, store=store)
        curves[tag] = [(int(r["iteration"]), r["loss"]) for r in rows]
        for kind in fold:
            test = groups[kind]
            tuned = model
            if config.finetune.steps > 0:
                g = torch.Generator().manual_seed(config.finetune.seed + kind)
                adapt, test = split_by_reference(test, config.finetune_fraction, g)
                tuned = finetune(model, adapt, config.finetune, store)
            metrics, _ = evaluate_records(tuned, test, config.eval, store)
            per_type[str(kind)] = metrics
    mean, std = mean_std([m["srocc"] for m in per_type.values()])
    result = {
        "protocol": "leave-one-distortion-out",
        "algorithm": config.prior.algorithm,
        "per_type": per_type,
        "mean_srocc": mean,
        "std_srocc": std,
        "config": dataclasses.asdict(config),
    }
    rows = [(t, m["srocc"], m["plcc"], m["n"]) for t, m in per_type.items()]
    rows.append(("mean", mean, mean_std([m["plcc"] for m in per_type.values()])[0], ""))
    table = markdown_table(["held-out type", "SROCC", "PLCC", "images"], rows)
    write_report(result, table, out, f"lodo-{config.prior.algorithm}")
    result["table"] = table
    result["curves"] = curves
    return result
