"""Ours: a core algorithm through `MetaTrainer.step`."""

from __future__ import annotations

from torch import Tensor

from metalearn import MetaTrainer, TrainerConfig
from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse


class Ours(Peer):
    """Our algorithm through `MetaTrainer.step` (sampling, trainer bookkeeping and outer Adam included)."""

    def __init__(self, s: Setting, stream: TaskStream, name: str, algorithm: object, steps: int) -> None:
        super().__init__(s, stream)
        self.name, self.steps_per_task, self.algorithm = name, steps, algorithm
        config = TrainerConfig(
            tasks_per_batch=s.tasks, outer_lr=s.outer_lr, progress=False, amp=False, bn_stats="keep"
        )
        self.trainer = MetaTrainer(self.model, algorithm, stream, mse, device=s.device, config=config)  # type: ignore[arg-type]

    def meta_gradient(self, tasks: list[Task]) -> list[Tensor]:
        results = list(self.algorithm.meta_steps(self.model, tasks, mse))  # type: ignore[attr-defined]
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return [sum(r.gradient[n] for r in results) / len(tasks) for n in names]

    def iterate(self) -> None:
        self.trainer.step()
