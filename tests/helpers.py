"""Builders shared by several test modules: tiny models and trainers, file modes, exact scalar tensors."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalearn import MetaAlgorithm, MetaIQA, MetaTrainer, TrainerConfig
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.task import Batch, TaskData


def tiny_mlp(dropout: bool = False, hidden: int = 8) -> nn.Module:
    """1-hidden-1 tanh regressor, seeded (optionally with dropout, to exercise torch's global random state)."""
    torch.manual_seed(0)
    layers = (
        [nn.Linear(1, hidden), nn.Tanh()] + ([nn.Dropout(0.5)] if dropout else []) + [nn.Linear(hidden, 1)]
    )
    return nn.Sequential(*layers)


def tiny_trainer(
    algorithm: MetaAlgorithm | None = None, net: nn.Module | None = None, **config: object
) -> MetaTrainer:
    """A CPU `MetaTrainer` on 4-shot sinusoid tasks, two per meta-batch (`config` overrides `TrainerConfig`)."""
    settings: dict[str, Any] = {"tasks_per_batch": 2, "outer_lr": 0.01, "seed": 1, "progress": False} | config
    return MetaTrainer(
        net if net is not None else tiny_mlp(),
        algorithm or MetaIQA(inner_lr=0.01, inner_steps=2),
        SinusoidSampler(shots=4, query_shots=4),
        device="cpu",
        config=TrainerConfig(**settings),
    )


def one_batch(data: TaskData) -> Batch:
    """A task set that is a single `(inputs, targets)` batch, as the sinusoid and the test tasks are."""
    assert isinstance(data, tuple) and len(data) == 2, type(data)
    inputs, targets = data
    assert isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
    return inputs, targets


def as_double(data: TaskData) -> Batch:
    """A single-batch task set in float64 (for finite differences)."""
    inputs, targets = one_batch(data)
    return inputs.double(), targets.double()


def file_mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(os.stat(path).st_mode)


def scalar64(value: float) -> torch.Tensor:
    """A 1 x 1 float64 tensor, for hand-derived values that must match to the last digit."""
    return torch.tensor([[value]], dtype=torch.float64)
