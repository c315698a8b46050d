"""Task samplers: where a meta-batch of tasks comes from, drawn with an explicit `torch.Generator`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from metalearn.task import Task

TaskFactory = Callable[[torch.Generator], Task]
"""Builds one task; all its randomness (which images, which crops) must come from the generator given."""


@runtime_checkable
class TaskSampler(Protocol):
    """Anything that returns `n` tasks, using only `generator` for randomness (so runs are reproducible)."""

    def sample(self, n: int, generator: torch.Generator) -> list[Task]: ...


class FactoryTaskSampler:
    """Samples from a fixed list of task factories: uniformly, without replacement while `n` allows."""

    def __init__(self, factories: Sequence[TaskFactory], replace: bool = False) -> None:
        if len(factories) == 0:
            raise ValueError("FactoryTaskSampler needs at least one task factory")
        self.factories = list(factories)
        self.replace = replace

    def __len__(self) -> int:
        return len(self.factories)

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        if self.replace or n > len(self.factories):
            picks = torch.randint(len(self.factories), (n,), generator=generator).tolist()
        else:
            picks = torch.randperm(len(self.factories), generator=generator)[:n].tolist()
        return [self.factories[i](generator) for i in picks]
