"""`TrainerConfig`: the outer loop's settings, checked when the trainer is built; the device they run on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

NON_MATHS_FIELDS = ("progress", "checkpoint_every")
"""`TrainerConfig` fields a resumed run may change: they do not change the weights."""


@dataclass
class TrainerConfig:
    """Outer-loop settings. `lr_decay` multiplies the outer learning rate every `lr_decay_every` iterations.

    `outer_optimizer` is `"adam"` (default) or `"sgd"` (plain gradient descent, no momentum: the outer
    step theta <- theta - outer_lr * mean meta-gradient as MetaIQA's Eq. (8) writes it). With
    `decay_inner_lr`, the algorithm's `inner_lr` follows the same schedule as the outer rate.

    `bn_stats` says what happens to BatchNorm running statistics, which no meta-gradient carries:
    `"average"` (default) sets the meta-model's buffers to the mean of the adapted copies' buffers over the
    meta-batch, so evaluation-mode statistics follow the data the model trains on; `"keep"` leaves the
    meta-model's buffers untouched (what MetaIQA's public code does in effect).

    `freeze_batchnorm` runs every BatchNorm layer in evaluation mode during training (normalising with its
    running statistics, which then stay fixed; its affine weights still learn). Tasks whose batches all
    come from one distortion type need it: in training mode BatchNorm subtracts each batch's own mean, so
    the network cannot learn how the types' quality levels compare (measured in docs/results.md).
    """

    tasks_per_batch: int = 5
    outer_lr: float = 1e-3
    outer_optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    lr_decay_every: int = 0
    decay_inner_lr: bool = False
    grad_clip: float | None = None
    bn_stats: Literal["average", "keep"] = "average"
    freeze_batchnorm: bool = False
    seed: int = 0
    amp: bool = True
    checkpoint_every: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a setting no run can honour, naming it (a `ValueError`, or `TypeError` for a wrong type)."""
        for name in ("tasks_per_batch", "lr_decay_every", "checkpoint_every", "seed"):
            _check_int(name, getattr(self, name))
        for name in ("outer_lr", "weight_decay", "lr_decay"):
            _check_real(name, getattr(self, name))
        for name in ("decay_inner_lr", "freeze_batchnorm", "amp", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.tasks_per_batch < 1:
            raise ValueError(f"tasks_per_batch must be at least 1, got {self.tasks_per_batch}")
        if not self.outer_lr > 0:
            raise ValueError(f"outer_lr must be a positive finite number, got {self.outer_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(
                f"lr_decay must be in (0, 1] (a factor that shrinks the rate), got {self.lr_decay}"
            )
        if self.grad_clip is not None:
            _check_real("grad_clip", self.grad_clip)
            if not self.grad_clip > 0:
                raise ValueError(
                    f"grad_clip must be positive (or None for no clipping), got {self.grad_clip}"
                )
        if self.outer_optimizer not in ("adam", "sgd"):
            raise ValueError(f"outer_optimizer must be 'adam' or 'sgd', got {self.outer_optimizer!r}")
        if self.bn_stats not in ("average", "keep"):
            raise ValueError(f"bn_stats must be 'average' or 'keep', got {self.bn_stats!r}")
        if self.lr_decay_every < 0 or self.checkpoint_every < 0:
            raise ValueError("lr_decay_every and checkpoint_every must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")


def _check_real(name: str, value: object) -> None:
    """A finite real number (an int is fine, a bool or a string is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` means CUDA when present, else CPU; a device this machine lacks is a `ValueError` up front."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA GPU is available here (use cpu or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(
                f"device {str(device)!r}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available here (use cpu or auto)")
    return resolved
