"""Synthetic-to-authentic (MetaIQA's Tables 3 and 4): fine-tune a prior on 80% of an authentic database."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.images import ImageStore
from metalearn_iqa.inference import EvalConfig, FinetuneConfig, evaluate_records, finetune
from metalearn_iqa.protocols.report import markdown_table, mean_std, write_report
from metalearn_iqa.tasks import split_by_reference


@dataclass
class CrossConfig:
    """`repeats` seeded splits; 80/20 by content, or by image set where records carry one (CID2013: 4 train, 2 test)."""

    repeats: int = 10
    train_fraction: float = 0.8
    train_sets: int = 4
    seed: int = 0
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def split_target(
    records: Sequence[IQARecord], config: CrossConfig, repeat: int
) -> tuple[list[IQARecord], list[IQARecord]]:
    """The `repeat`-th seeded train/test split of an authentic database."""
    g = torch.Generator().manual_seed(config.seed * 1000 + repeat)
    sets = sorted({r.image_set for r in records if r.image_set})
    if sets and all(r.image_set for r in records) and not set(sets) <= {"training", "validation", "test"}:
        if len(sets) <= config.train_sets:
            raise DatasetError(f"{len(sets)} image sets: need more than {config.train_sets} to hold some out")
        combos = list(itertools.combinations(sets, config.train_sets))
        chosen = set(combos[int(torch.randint(len(combos), (1,), generator=g))])
        return [r for r in records if r.image_set in chosen], [
            r for r in records if r.image_set not in chosen
        ]
    return split_by_reference(records, config.train_fraction, g)


def run_cross(
    prior: nn.Module,
    target: Sequence[IQARecord],
    config: CrossConfig,
    out_dir: str | Path,
    name: str,
    stem: str,
) -> dict[str, Any]:
    """Fine-tune `prior` on each split's training part and test on the rest; mean and std over repeats."""
    store = ImageStore(capacity=max(4096, len(target)))
    splits = []
    for repeat in range(config.repeats):
        train, test = split_target(target, config, repeat)
        tuned = finetune(
            prior, train, dataclasses.replace(config.finetune, seed=config.finetune.seed + repeat), store
        )
        metrics, _ = evaluate_records(tuned, test, config.eval, store)
        splits.append(metrics | {"train": len(train), "test": len(test)})
    summary = {}
    for key in ("plcc", "srocc", "plcc_logistic", "krcc", "rmse"):
        summary[key], summary[f"{key}_std"] = mean_std([s[key] for s in splits])
    result = {"protocol": "synthetic-to-authentic", "target": name, "splits": splits, "summary": summary}
    result["config"] = dataclasses.asdict(config)
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
