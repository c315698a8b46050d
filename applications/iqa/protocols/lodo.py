"""Leave-one-distortion-out (MetaIQA's Table 2): meta-train on all types but the held-out ones, test on those."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.splits import group_by_distortion, split_by_reference
from metalearn_iqa.evaluation.predict import EvalConfig, evaluate_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report
from metalearn_iqa.training.finetune import FinetuneConfig, finetune
from metalearn_iqa.training.prior import PriorConfig, train_prior


@dataclass
class LodoConfig:
    """`folds`: each fold is the tuple of types held out together (default: every type alone, the paper's way).

    Every held-out type is read zero-shot: the prior tested on all of the type's images, no fine-tuning (the
    paper's Table 2). With `finetune.epochs > 0` there is also a fine-tuned reading: the type split by
    reference, fine-tuned on `finetune_fraction` of its contents and tested on the rest.
    """

    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    folds: list[tuple[int, ...]] | None = None
    finetune: FinetuneConfig = dataclasses.field(default_factory=lambda: FinetuneConfig(epochs=0))
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


def _reading(per_type: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-type metrics with their mean and std SROCC (and mean PLCC) over held-out types."""
    mean, std = mean_std([m["srocc"] for m in per_type.values()])
    return {
        "per_type": per_type,
        "mean_srocc": mean,
        "std_srocc": std,
        "mean_plcc": mean_std([m["plcc"] for m in per_type.values()])[0],
    }


def _finetuned_metrics(
    model: nn.Module, records: list[IQARecord], kind: int, config: LodoConfig, store: ImageStore
) -> dict[str, Any]:
    """Fine-tune on `finetune_fraction` of a held-out type's contents, test on the rest."""
    g = torch.Generator().manual_seed(config.finetune.seed + kind)
    adapt, test = split_by_reference(records, config.finetune_fraction, g)
    metrics, _ = evaluate_records(finetune(model, adapt, config.finetune, store), test, config.eval, store)
    return metrics | {"finetune_images": len(adapt)}


def _table(zero_shot: dict[str, Any], finetuned: dict[str, Any] | None, config: LodoConfig) -> str:
    """Zero-shot columns, then fine-tuned ones if any, and a note saying what each reading is."""
    header = ["held-out type", "zero-shot SROCC", "zero-shot PLCC", "images"]
    rows: list[list[Any]] = [[t, m["srocc"], m["plcc"], m["n"]] for t, m in zero_shot["per_type"].items()]
    rows.append(["mean", zero_shot["mean_srocc"], zero_shot["mean_plcc"], ""])
    note = "zero-shot: the prior on all images of the held-out type, no fine-tuning (the paper's Table 2)."
    if finetuned is not None:
        header += ["fine-tuned SROCC", "fine-tuned PLCC", "test images"]
        for row, m in zip(rows, finetuned["per_type"].values()):
            row += [m["srocc"], m["plcc"], m["n"]]
        rows[-1] += [finetuned["mean_srocc"], finetuned["mean_plcc"], ""]
        note += (
            f"\nfine-tuned: {config.finetune.epochs} epochs on {config.finetune_fraction:.0%} of the type's "
            "contents, tested on the other contents (not the paper's protocol)."
        )
    return markdown_table(header, rows) + "\n\n" + note


def run_lodo(
    records: Sequence[IQARecord],
    config: LodoConfig,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    store: ImageStore | None = None,
) -> dict[str, Any]:
    """Train one prior per fold and score each held-out type zero-shot (and fine-tuned if asked).

    `resume` continues the folds' runs, `overwrite` replaces them (see `train_prior`). One `store` (default:
    in RAM, bounded by `images.RAM_BYTES`) serves every fold, so each image is decoded once.
    """
    out = Path(out_dir)
    store = store if store is not None else ImageStore()
    zero_shot: dict[str, dict[str, Any]] = {}
    finetuned: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    groups = group_by_distortion(records)
    for fold in _folds(records, config.folds):
        tag = "-".join(f"{t:02d}" for t in fold)
        train = [r for r in records if r.distortion not in fold]
        model, rows = train_prior(
            config.prior, train, out / f"fold-{tag}", resume=resume, store=store, overwrite=overwrite
        )
        curves[tag] = [(int(r["iteration"]), r["loss"]) for r in rows]
        for kind in fold:
            zero_shot[str(kind)], _ = evaluate_records(model, groups[kind], config.eval, store)
            if config.finetune.epochs > 0:
                finetuned[str(kind)] = _finetuned_metrics(model, groups[kind], kind, config, store)
    result: dict[str, Any] = {
        "protocol": "leave-one-distortion-out",
        "algorithm": config.prior.algorithm,
        "init": config.prior.init_label,
        "zero_shot": _reading(zero_shot),
        "finetuned": _reading(finetuned) if finetuned else None,
        "config": dataclasses.asdict(config),
    }
    table = _table(result["zero_shot"], result["finetuned"], config)
    write_report(result, table, out, f"lodo-{config.prior.algorithm}")
    result["table"] = table
    result["curves"] = curves
    return result
