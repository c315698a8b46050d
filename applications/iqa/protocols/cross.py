"""Synthetic-to-authentic (MetaIQA's Tables 3 and 4): fine-tune a prior on 80% of an authentic database."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.splits import split_by_reference
from metalearn_iqa.evaluation.predict import EvalConfig, evaluate_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.weights import WeightsError, init_label
from metalearn_iqa.protocols.report import markdown_table, mean_std_if_all, write_report
from metalearn_iqa.training.finetune import FinetuneConfig, finetune
from metalearn_iqa.training.prior import prior_summary


@dataclass
class CrossConfig:
    """`repeats` seeded splits: 80/20 by content, or by image set where records carry one.

    By image set (CID2013: 4 sets train, 2 test), repeats take distinct combinations in a seeded order, so
    there can be at most C(sets, train_sets) repeats (15 for CID2013).
    """

    repeats: int = 10
    train_fraction: float = 0.8
    train_sets: int = 4
    seed: int = 0
    finetune: FinetuneConfig = dataclasses.field(default_factory=lambda: FinetuneConfig(epochs=10))
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def _image_sets(records: Sequence[IQARecord]) -> list[str]:
    """The image sets to split by (empty if some record has none, or they are KonIQ's official split names)."""
    sets = sorted({r.image_set for r in records if r.image_set})
    if sets and all(r.image_set for r in records) and not set(sets) <= {"training", "validation", "test"}:
        return sets
    return []


def image_set_splits(sets: Sequence[str], train_sets: int, seed: int) -> list[tuple[str, ...]]:
    """Every distinct choice of `train_sets` training sets, in an order seeded by `seed` (repeat r: the r-th)."""
    if len(sets) <= train_sets:
        raise DatasetError(f"{len(sets)} image sets: need more than {train_sets} to hold some out")
    combos = list(itertools.combinations(sets, train_sets))
    order = torch.randperm(len(combos), generator=torch.Generator().manual_seed(seed)).tolist()
    return [combos[i] for i in order]


def split_target(
    records: Sequence[IQARecord], config: CrossConfig, repeat: int
) -> tuple[list[IQARecord], list[IQARecord]]:
    """The `repeat`-th seeded train/test split of an authentic database; by image set, distinct per repeat."""
    sets = _image_sets(records)
    if not sets:
        return split_by_reference(
            records, config.train_fraction, torch.Generator().manual_seed(config.seed * 1000 + repeat)
        )
    choices = image_set_splits(sets, config.train_sets, config.seed)
    if repeat >= len(choices):
        raise DatasetError(
            f"{len(sets)} image sets give only {len(choices)} distinct {config.train_sets}-set training splits: "
            f"use at most {len(choices)} repeats"
        )
    chosen = set(choices[repeat])
    return [r for r in records if r.image_set in chosen], [r for r in records if r.image_set not in chosen]


def prior_provenance(path: str | Path) -> dict[str, str]:
    """A given prior's path, algorithm and backbone init, from the run record inside it (`prior_summary`:
    older priors fall back to the `prior.json` beside them, with a warning).

    A model without either (e.g. a fine-tuned file) is reported as algorithm "unknown", init its own path.
    """
    path = Path(path)
    try:
        summary = prior_summary(path) or {}
        config = summary["config"]
        init = summary.get("init") or init_label(str(config["model"]["pretrained"]))  # a QPT file, if any
        found = {"algorithm": str(config["algorithm"]), "init": str(init)}
    except (KeyError, TypeError, WeightsError):
        found = {"algorithm": "unknown", "init": str(path)}
    return {"prior": str(path), **found}


def run_cross(
    prior: nn.Module,
    target: Sequence[IQARecord],
    config: CrossConfig,
    out_dir: str | Path,
    name: str,
    stem: str,
    provenance: Mapping[str, str] | None = None,
    store: ImageStore | None = None,
) -> dict[str, Any]:
    """Fine-tune `prior` on each split's training part and test on the rest; mean and std over repeats.

    `provenance` (algorithm, init, prior path) goes into the report as is. One `store` (default: in RAM,
    bounded by `images.RAM_BYTES`) serves every split, so each image is decoded once.
    """
    store = store if store is not None else ImageStore()
    parts = [split_target(target, config, repeat) for repeat in range(config.repeats)]  # fail before training
    splits = []
    for repeat, (train, test) in enumerate(parts):
        tuned = finetune(
            prior, train, dataclasses.replace(config.finetune, seed=config.finetune.seed + repeat), store
        )
        metrics, _ = evaluate_records(tuned, test, config.eval, store)
        splits.append(metrics | {"train": len(train), "test": len(test)})
    summary = {}
    for key in ("plcc", "srocc", "plcc_logistic", "krcc", "rmse"):
        summary[key], summary[f"{key}_std"] = mean_std_if_all([s[key] for s in splits])
    result: dict[str, Any] = {"protocol": "synthetic-to-authentic", "target": name, **(provenance or {})}
    result |= {"splits": splits, "summary": summary, "config": dataclasses.asdict(config)}
    table = markdown_table(
        ["target", "PLCC", "± std", "SROCC", "± std", "splits"],
        [
            (
                name,
                summary["plcc"],
                summary["plcc_std"],
                summary["srocc"],
                summary["srocc_std"],
                config.repeats,
            )
        ],
    )
    write_report(result, table, out_dir, stem)
    result["table"] = table
    return result
