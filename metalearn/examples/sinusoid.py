"""Few-shot sinusoid regression (Finn et al., 2017): amplitude in [0.1, 5], phase in [0, pi], x in [-5, 5]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metalearn.task import Task


@dataclass(frozen=True)
class SinusoidSampler:
    """Draws sinusoid tasks with `shots` support and `query_shots` query points each."""

    shots: int = 10
    query_shots: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def _uniform(
        self, low_high: tuple[float, float], shape: tuple[int, ...], g: torch.Generator
    ) -> torch.Tensor:
        low, high = low_high
        return low + (high - low) * torch.rand(shape, generator=g)

    def task(self, generator: torch.Generator, name: str = "sinusoid") -> Task:
        amplitude = self._uniform(self.amplitude, (1,), generator)
        phase = self._uniform(self.phase, (1,), generator)

        def points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = self._uniform(self.x_range, (n, 1), generator)
            return x, amplitude * torch.sin(x - phase)

        return Task(support=points(self.shots), query=points(self.query_shots), name=name)

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        return [self.task(generator) for _ in range(n)]


def sinusoid_mlp(hidden: int = 40, seed: int = 0) -> nn.Module:
    """The MAML paper's regressor: 1-40-40-1 with ReLU."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )
