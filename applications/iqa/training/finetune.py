"""Fine-tuning a prior on a target database: Adam on every training image for a fixed number of epochs."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import StepLR

from metalearn import DivergedError, mse_loss
from metalearn.checkpoint import first_nonfinite
from metalearn.task import Batch
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.training.tasks import training_batches


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a prior on a target's training images for a fixed number of epochs.

    From the paper: Adam (betas 0.9/0.99), the same squared-error loss, learning rate x`lr_decay` = 0.8 every
    `decay_every` = 5 epochs (applied to the initial rate, not compounded), random `crop` crops (224).
    Ours, since the paper does not give them: `lr` 1e-4 (what the authors' public fine-tuning code uses),
    `weight_decay` 1e-4 (the prior's meta-training value; the authors' fine-tuning code uses none),
    `batch_size` 8, horizontal flips. A fixed number of epochs, never the best test score over epochs (the
    authors' code selects on the test split). One epoch = every training image once, in shuffled batches.
    """

    # Fields and checks shaped like `TaskConfig`'s (flagged by `duplicates`): another job's settings.
    epochs: int
    lr: float = 1e-4
    lr_decay: float = 0.8
    decay_every: int = 5
    weight_decay: float = 1e-4
    batch_size: int = 8
    crop: int = 224
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be at least 0, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be at least 2 (BatchNorm needs 2 images), got {self.batch_size}"
            )
        if self.decay_every < 1:
            raise ValueError(f"decay_every must be at least 1 epoch, got {self.decay_every}")
        if self.crop < 32:
            raise ValueError(f"crop must be at least 32 pixels (ResNet18 downsamples 32x), got {self.crop}")


def finetune_optimizer(model: nn.Module, config: FinetuneConfig) -> tuple[torch.optim.Adam, StepLR]:
    """Adam with weight decay, and its per-epoch schedule: lr x `lr_decay` every `decay_every` epochs."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )
    return optimizer, StepLR(optimizer, step_size=config.decay_every, gamma=config.lr_decay)


def _train_epoch(model: nn.Module, batches: Iterable[Batch], optimizer: torch.optim.Optimizer) -> None:
    """One pass over `batches` of (images, scores), one optimiser step per batch."""
    device = next(model.parameters()).device
    for images, scores in batches:
        optimizer.zero_grad(set_to_none=True)
        mse_loss(model(images.to(device)), scores.to(device)).backward()
        optimizer.step()


def finetune(
    model: nn.Module, records: Sequence[IQARecord], config: FinetuneConfig, store: ImageStore | None = None
) -> nn.Module:
    """A copy of `model` fine-tuned for `config.epochs` epochs on `records` (the prior is untouched).

    Raises `DivergedError` after the first epoch that leaves a weight that is not finite.
    """
    tuned = copy.deepcopy(model)
    if config.epochs == 0:
        return tuned
    if len(records) < 2:
        raise DatasetError(f"{len(records)} training image(s): fine-tuning needs at least 2 (BatchNorm)")
    batches = training_batches(records, store or ImageStore(), config.crop, config.batch_size, config.seed)
    optimizer, schedule = finetune_optimizer(tuned, config)
    tuned.train()
    for epoch in range(1, config.epochs + 1):
        _train_epoch(tuned, batches, optimizer)
        schedule.step()
        bad = first_nonfinite(tuned.state_dict())
        if bad is not None:
            raise DivergedError(
                f"fine-tuning diverged in epoch {epoch}: non-finite weights in {bad} (learning rate {config.lr:g} too high?)",
                epoch,
            )
    return tuned
