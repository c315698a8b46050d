"""Does a prior learn at all? One training run on the embedded database, scored on held-out contents.

The diagnostic behind the demo's design (docs/results.md, "Why the old demo was at chance"): train the
compact CNN with plain Adam or a meta-learner for a number of forward+backward passes on the training
types x half the contents, then report pooled SROCC of whole images on the other half (seen types), on
the training contents, and zero-shot on the held-out types 3, 10, 13.

python benchmarks/iqa_learning.py --variant plain --lr 1e-3 --passes 1500 --norm batch
python benchmarks/iqa_learning.py --variant metaiqa --tasks 1 --inner-steps 1 --outer-lr 2e-3 --norm none
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from metalearn import MetaTrainer, TrainerConfig, mse_loss
from metalearn.algorithms import MAML, MetaAlgorithm, MetaIQA, Reptile
from metalearn_iqa.data.splits import split_by_reference
from metalearn_iqa.data.synthetic import load_synthetic
from metalearn_iqa.evaluation.metrics import srocc
from metalearn_iqa.evaluation.predict import predict_records
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.training.tasks import CropBatches, DistortionTaskSampler, TaskConfig

HELD_OUT = (3, 10, 13)


def _algorithm(args: argparse.Namespace) -> tuple[MetaAlgorithm, int]:
    """The meta-learner and its passes per task."""
    k, lr = args.inner_steps, args.inner_lr
    if args.variant == "metaiqa":
        return MetaIQA(inner_lr=lr, inner_steps=k, signal=args.signal), 2 * k
    if args.variant == "fomaml":
        return MAML(inner_lr=lr, inner_steps=k, first_order=True, inner_optimizer="adam"), k + 1
    return Reptile(inner_lr=lr, inner_steps=2 * k, inner_optimizer="adam"), 2 * k


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=["plain", "metaiqa", "fomaml", "reptile"], default="plain")
    parser.add_argument("--passes", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3, help="plain: Adam rate")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=1e-3)
    parser.add_argument("--outer-lr", type=float, default=2e-3)
    parser.add_argument("--outer-optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--signal", choices=["query_gradient", "displacement"], default="query_gradient")
    parser.add_argument("--norm", choices=["batch", "group", "none"], default="none")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    records = load_synthetic()
    train_types = [r for r in records if r.distortion not in HELD_OUT]
    train, test = split_by_reference(train_types, 0.5, torch.Generator().manual_seed(args.seed))
    store = ImageStore(capacity=len(records) + 16)
    torch.manual_seed(args.seed)
    model = build_model(ModelConfig(backbone="small", hidden=128, norm=args.norm, width=args.width))
    started = time.perf_counter()
    if args.variant == "plain":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        for inputs, targets in CropBatches(train, store, args.crop, args.batch_size, args.passes, args.seed):
            loss = mse_loss(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    else:
        algorithm, per_task = _algorithm(args)
        task = TaskConfig(crop=args.crop, batch_size=args.batch_size, batches=args.inner_steps)
        trainer = MetaTrainer(
            model,
            algorithm=algorithm,
            sampler=DistortionTaskSampler(train, task, store),
            device="cpu",
            config=TrainerConfig(
                tasks_per_batch=args.tasks,
                outer_lr=args.outer_lr,
                outer_optimizer=args.outer_optimizer,
                seed=args.seed,
                progress=False,
            ),
        )
        trainer.fit(args.passes // (args.tasks * per_task))
    seconds = time.perf_counter() - started

    def score(subset: list) -> float:
        return round(
            srocc(predict_records(model, subset, store=store), np.asarray([r.score for r in subset])), 3
        )

    result = {
        **{k: v for k, v in vars(args).items() if k != "threads"},
        "seconds": round(seconds, 1),
        "seen_types_heldout_contents": score(test),
        "seen_types_training_contents": score(train[::3]),
        **{f"zero_shot_{k}": score([r for r in records if r.distortion == k]) for k in HELD_OUT},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
