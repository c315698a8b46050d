"""Builders shared by several test modules: tiny models and trainers, file modes, exact scalar tensors, a
simulated full disk."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalearn import MetaAlgorithm, MetaIQA, MetaTrainer, Task, TrainerConfig
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


def tiny_conv(ways: int = 5, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Sequential:
    """A conv-4 in miniature for 8x8 one-channel images: conv, BatchNorm, ReLU, pool, flatten, linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, ways)
    ).to(dtype)


def episode(
    ways: int = 5, shots: int = 1, queries: int = 2, seed: int = 1, dtype: torch.dtype = torch.float32
) -> Task:
    """An N-way K-shot episode of random 8x8 images: labels 0..N-1 (int64), `queries` query images a class."""
    g = torch.Generator().manual_seed(seed)

    def images(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(ways).repeat_interleave(per_class)
        x = torch.randn(len(labels), 1, 8, 8, generator=g, dtype=dtype) + labels.view(-1, 1, 1, 1).to(dtype)
        return x, labels

    return Task(support=images(shots), query=images(queries), name=f"{ways}-way {shots}-shot")


class TemplateEpisodes:
    """N-way K-shot episodes over `classes` fixed random 8x8 templates plus noise, labels shuffled per episode
    (so only learning to compare images, not a fixed classifier, helps), all drawn from the generator."""

    def __init__(
        self, ways: int = 5, shots: int = 1, queries: int = 3, classes: int = 12, noise: float = 0.8
    ):
        self.ways, self.shots, self.queries, self.noise = ways, shots, queries, noise
        self.templates = torch.randn(classes, 1, 8, 8, generator=torch.Generator().manual_seed(123))

    def task(self, generator: torch.Generator) -> Task:
        chosen = torch.randperm(len(self.templates), generator=generator)[: self.ways]

        def images(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
            labels = torch.arange(self.ways).repeat_interleave(per_class)
            noise = torch.randn(len(labels), 1, 8, 8, generator=generator) * self.noise
            return self.templates[chosen[labels]] + noise, labels

        return Task(support=images(self.shots), query=images(self.queries))

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        return [self.task(generator) for _ in range(n)]


@contextlib.contextmanager
def full_disk_after(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes of any file fail as on a full disk (EFBIG, the kernel's own error)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
