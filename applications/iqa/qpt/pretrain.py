"""A QPT run: pre-train a backbone on unlabelled images with the quality-aware contrastive loss, then
write the backbone alone (`backbone.pt`; the projection head is dropped) and a JSON summary.

The run folder holds the trainer's `checkpoint/` (resumable, locked while training, refused or replaced
like every other run: `metalearn.runs`), `backbone.pt` and `qpt.json`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metalearn import MetaTrainer, TrainerConfig
from metalearn.checkpoint import save_json
from metalearn.runs import open_run
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.qpt.algorithm import QPT
from metalearn_iqa.qpt.backbone import QPTNet, save_backbone
from metalearn_iqa.qpt.data import BatchConfig, ContrastiveSampler
from metalearn_iqa.qpt.degradations import DegradationConfig, space_size

BACKBONE_FILE = "backbone.pt"
SUMMARY_FILE = "qpt.json"
CHECKPOINT_DIR = "checkpoint"
BUDGET_FIELDS = ("iterations", "device", "threads")


@dataclass
class QPTConfig:
    """Everything that defines a QPT run (stored with its checkpoints; a resume may change the budget only).

    Ours, sized for CPU runs (the paper pre-trains ResNet50 on ImageNet for hundreds of epochs): Adam at
    `lr` 1e-3, `temperature` 0.2, a 128-d projection from a 512-d hidden layer, 4 images x 2 chains x 2
    patches of 64 px per batch. `momentum` > 0 switches to the MoCo form with a `queue` of keys.
    """

    iterations: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    momentum: float = 0.0
    queue: int = 0
    projection_dim: int = 128
    projection_hidden: int = 512
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    batch: BatchConfig = field(default_factory=BatchConfig)
    degradations: DegradationConfig = field(default_factory=DegradationConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="small", hidden=128))

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def settings(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in BUDGET_FIELDS}

    def passes(self) -> int:
        """Forward+backward passes of one patch the run spends (the momentum form: forward-only keys excluded)."""
        per = self.batch.patches // 2 if self.momentum else self.batch.patches
        return self.iterations * per


def make_trainer(config: QPTConfig, images: Sequence[np.ndarray]) -> MetaTrainer:
    """A `MetaTrainer` stepping the QPT loss on contrastive batches of `images`, ready to `fit`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # network and projection-head initialisation
    model = QPTNet(config.model, config.projection_dim, config.projection_hidden)
    algorithm = QPT(config.temperature, config.momentum, config.queue, adapt_lr=config.lr)
    trainer_config = TrainerConfig(
        tasks_per_batch=1,
        outer_lr=config.lr,
        weight_decay=config.weight_decay,
        seed=config.seed,
    )
    return MetaTrainer(
        model,
        algorithm=algorithm,
        sampler=ContrastiveSampler(images, config.batch, config.degradations),
        loss_fn=lambda pred, target: pred.sum() * 0,  # unused: the algorithm computes its own loss
        device=config.device,
        config=trainer_config,
        run_config=config.settings() | {"images": len(images)},
    )


def pretrain(
    config: QPTConfig,
    images: Sequence[np.ndarray],
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 50,
    source: str = "",
) -> Path:
    """Pre-train, checkpointing into `out_dir/checkpoint`; write `backbone.pt` and `qpt.json`; return the
    backbone file. `source` (where the images came from) is recorded in the summary. `out_dir` is opened as
    a run (`metalearn.runs.open_run`): locked, a previous run refused unless resumed or overwritten."""
    with open_run(
        out_dir, (BACKBONE_FILE, SUMMARY_FILE), (CHECKPOINT_DIR,), resume=resume, overwrite=overwrite
    ) as out:
        trainer = make_trainer(config, images)
        trainer.config.checkpoint_every = checkpoint_every
        trainer.fit(config.iterations, checkpoint_dir=out / CHECKPOINT_DIR, resume=resume)
        model = trainer.model
        assert isinstance(model, QPTNet)
        summary = {
            "method": "qpt",
            "config": config.to_dict(),
            "images": len(images),
            "source": source,
            "iterations": config.iterations,
            "passes": config.passes(),
            "degradation_space": space_size(config.degradations),
        }
        path = save_backbone(model.backbone, config.model, out / BACKBONE_FILE, summary)
        save_json(summary, out / SUMMARY_FILE)
    return path
