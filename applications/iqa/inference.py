"""Scoring images with a model, evaluating against MOS, and fine-tuning a prior on a target database."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from metalearn import mse_loss
from metalearn.algorithms.base import first_order_adapt
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images import ImageStore, centre_crop, five_crops, normalise
from metalearn_iqa.metrics import evaluate_scores
from metalearn_iqa.tasks import training_batches


@dataclass(frozen=True)
class EvalConfig:
    """Test-time view of an image: the centre crop (`crops=1`) or the mean over five crops (`crops=5`).

    Crops, not resizing: resampling would change the very distortions being scored.
    """

    crop: int = 224
    crops: int = 1
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.crops not in (1, 5):
            raise ValueError(f"crops must be 1 (centre) or 5 (corners + centre), got {self.crops}")


@torch.no_grad()
def predict_records(
    model: nn.Module,
    records: Sequence[IQARecord] | Sequence[str],
    config: EvalConfig = EvalConfig(),
    store: ImageStore | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Predicted quality (higher = better) per record or image path, model in eval mode."""
    store = store or ImageStore(capacity=256)
    paths = [r if isinstance(r, str) else r.path for r in records]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in tqdm(range(0, len(paths), config.batch_size), desc="predict", disable=not progress):
            views = []
            for path in paths[start : start + config.batch_size]:
                image = store(path)
                views.extend(
                    five_crops(image, config.crop) if config.crops == 5 else [centre_crop(image, config.crop)]
                )
            out = model(normalise(torch.stack(views)).to(device)).float().cpu().view(-1, config.crops)
            scores.extend(out.mean(dim=1).tolist())
    finally:
        model.train(was_training)
    return np.asarray(scores, dtype=np.float64)


def evaluate_records(
    model: nn.Module,
    records: Sequence[IQARecord],
    config: EvalConfig = EvalConfig(),
    store: ImageStore | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """SROCC, PLCC (raw and logistic), KRCC and RMSE of predictions against normalised MOS."""
    pred = predict_records(model, records, config, store, progress)
    return evaluate_scores(pred, np.asarray([r.score for r in records])), pred


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning as in the paper: Adam on the target's training images with the same loss, fixed steps.

    A fixed number of steps, never the best test score over epochs: no model selection on test data.
    """

    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 8
    crop: int = 224
    seed: int = 0


def finetune(
    model: nn.Module, records: Sequence[IQARecord], config: FinetuneConfig, store: ImageStore | None = None
) -> nn.Module:
    """A fine-tuned copy of `model` (the prior is untouched); zero steps returns a plain copy."""
    if config.steps == 0:
        return copy.deepcopy(model)
    data = training_batches(records, store or ImageStore(), config.crop, config.batch_size, config.seed)
    return first_order_adapt(model, data, mse_loss, config.steps, "adam", config.lr, betas=(0.9, 0.99))
