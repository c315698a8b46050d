"""Why first-order MetaIQA "collapsed" (k = 3, batch 32, normalisation layers): one change at a time.

Trains the compact CNN (64 px crops) on the training types x half the contents of the embedded database
(the demo's content split for each seed) and reports pooled and mean per-type SROCC on the training types x
every second test content (whole images) after given numbers of *outer updates*, so that algorithms are
compared per update as well as per forward+backward pass. The variables:

- `--algorithm plain` (one Adam step on the mean gradient of `--batches` batches) or `metaiqa` (k =
  `--batches` inner Adam steps on the support batches, k on the query batches, the mean query gradient);
- `--compose type` (every batch holds one distortion type: MetaIQA's distortion-specific tasks) or `mixed`
  (batches of the pooled types; for MetaIQA, support and query split by content across all types);
- `--batch-size`, `--tasks` (tasks, i.e. distortion types, averaged per outer update), `--lr` (the outer,
  or plain, Adam rate), `--inner-lr`, `--norm` (none, batch, group);
- `--warm-start N`: N plain updates on mixed batches first (the same for every variant of a seed).

python benchmarks/iqa_collapse.py --algorithm metaiqa --compose type --batches 3 --updates 400 --seeds 0 1 2
python benchmarks/iqa_collapse.py --algorithm plain --compose type --updates 400 --evals 100 200 400

Each seed prints one JSON line; then a table of the means over seeds with t-based 95 % CIs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metalearn import MetaTrainer, Task, TrainerConfig
from metalearn.algorithms import MetaAlgorithm, MetaIQA, Plain
from metalearn.stats import mean_ci
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.data.splits import split_by_reference
from metalearn_iqa.data.synthetic import load_synthetic
from metalearn_iqa.evaluation.metrics import srocc
from metalearn_iqa.evaluation.predict import predict_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import IQANet, ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.training.tasks import CropBatches, DistortionTaskSampler, TaskConfig, _seed, prefetch

HELD_OUT = (3, 10, 13)


class MixedSampler:
    """Tasks whose support and query sets are batches of all training types pooled, split by content."""

    def __init__(self, records: Sequence[IQARecord], config: TaskConfig, store: ImageStore) -> None:
        self.records, self.config, self.store = list(records), config, store

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks, c = [], self.config
        for _ in range(n):
            support, query = split_by_reference(self.records, c.support_fraction, generator)
            tasks.append(
                Task(
                    support=CropBatches(
                        support, self.store, c.crop, c.batch_size, c.batches, _seed(generator)
                    ),
                    query=CropBatches(query, self.store, c.crop, c.batch_size, c.batches, _seed(generator)),
                    name="mixed",
                )
            )
        return prefetch(tasks)


@dataclass(frozen=True)
class Variant:
    """One training rule: algorithm, batch composition, batch size, batches per step, tasks, outer rate."""

    algorithm: str = "plain"
    compose: str = "mixed"
    batch_size: int = 16
    batches: int = 1
    tasks: int = 1
    lr: float = 1e-3
    inner_lr: float = 1e-3
    crop: int = 64

    def trainer(
        self, model: IQANet, train: list[IQARecord], store: ImageStore, seed: int
    ) -> tuple[MetaTrainer, int]:
        """The trainer of this variant, and the passes one outer update spends."""
        task = TaskConfig(crop=self.crop, batch_size=self.batch_size, batches=self.batches)
        rule: MetaAlgorithm
        if self.algorithm == "plain":
            rule, passes = Plain(), self.batches
        else:
            rule, passes = MetaIQA(inner_lr=self.inner_lr, inner_steps=self.batches), 2 * self.batches
        sampler = (
            MixedSampler(train, task, store)
            if self.compose == "mixed"
            else DistortionTaskSampler(train, task, store)
        )
        config = TrainerConfig(tasks_per_batch=self.tasks, outer_lr=self.lr, seed=seed, progress=False)
        return MetaTrainer(
            model, algorithm=rule, sampler=sampler, device="cpu", config=config
        ), passes * self.tasks


def run(args: argparse.Namespace, seed: int, records: list[IQARecord], store: ImageStore) -> dict:
    """One seed: the readings at every evaluation point."""
    train_contents, test_contents = split_by_reference(records, 0.5, torch.Generator().manual_seed(seed))
    train = [r for r in train_contents if r.distortion not in HELD_OUT]
    every_second = set(sorted({str(r.reference) for r in test_contents})[:: args.eval_every_content])
    test = [r for r in test_contents if r.distortion not in HELD_OUT and r.reference in every_second]
    truth, kinds = np.asarray([r.score for r in test]), np.asarray([r.distortion for r in test])
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone="small", hidden=128, norm=args.norm))
    if args.warm_start:
        warm, _ = Variant(crop=args.crop).trainer(model, train, store, seed)  # plain, mixed, 16, Adam 1e-3
        warm.fit(args.warm_start)
    variant = Variant(
        args.algorithm,
        args.compose,
        args.batch_size,
        args.batches,
        args.tasks,
        args.lr,
        args.inner_lr,
        args.crop,
    )
    trainer, per_update = variant.trainer(model, train, store, seed)
    curve, cpu = [], 0.0
    for target in sorted({u for u in args.evals if u < args.updates} | {args.updates}):
        start = time.process_time()
        while trainer.iteration < target:
            trainer.step()
        cpu += time.process_time() - start
        pred = predict_records(trainer.model, test, store=store)
        per_type = [srocc(pred[kinds == k], truth[kinds == k], warn=False) for k in sorted(set(kinds))]
        curve.append(
            {
                "updates": target,
                "passes": target * per_update,
                "pooled": srocc(pred, truth, warn=False),
                "per_type": float(np.nanmean(per_type)),
                "cpu_s": round(cpu, 1),
            }
        )
    return {"seed": seed, "passes_per_update": per_update, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithm", choices=["plain", "metaiqa"], default="plain")
    parser.add_argument("--compose", choices=["mixed", "type"], default="mixed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=1, help="MetaIQA's k; plain: batches per update")
    parser.add_argument("--tasks", type=int, default=1, help="Tasks (types, for --compose type) per update")
    parser.add_argument("--lr", type=float, default=1e-3, help="Outer (plain: the) Adam rate")
    parser.add_argument("--inner-lr", type=float, default=1e-3)
    parser.add_argument("--norm", choices=["none", "batch", "group"], default="none")
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--evals", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--warm-start", type=int, default=0, help="Plain mixed-batch updates first")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--eval-every-content", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = load_synthetic()
    store = ImageStore(capacity=len(records) + 16)
    runs = []
    for seed in args.seeds:
        runs.append(run(args, seed, records, store))
        print(json.dumps({**vars(args), **runs[-1]}), flush=True)
    print(
        "\n| outer updates | passes | pooled SROCC | mean per-type SROCC | per seed (pooled) |\n|---|---|---|---|---|"
    )
    for i, point in enumerate(runs[0]["curve"]):
        pooled = mean_ci([r["curve"][i]["pooled"] for r in runs])
        per_type = mean_ci([r["curve"][i]["per_type"] for r in runs])
        print(
            f"| {point['updates']} | {point['passes']} | {pooled.mean:.3f} ± {pooled.ci95:.3f} | "
            f"{per_type.mean:.3f} ± {per_type.ci95:.3f} | {', '.join(f'{v:.3f}' for v in pooled.values)} |"
        )


if __name__ == "__main__":
    main()
