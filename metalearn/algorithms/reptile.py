"""Reptile (Nichol et al., 2018): the meta-gradient is the displacement theta - phi after inner SGD steps."""

from __future__ import annotations

from torch import nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    ScratchCopy,
    displacement,
    first_order_adapt,
    make_optimizer,
    model_device,
    snapshot_buffers,
    train_steps,
)
from metalearn.task import ChainedData, Task, TaskData, cycle_batches


class Reptile(MetaAlgorithm):
    """`inner_steps` SGD steps on the task's whole data (support batches, then query batches, cycled).

    Batches are drawn lazily, one per step: streamed sets cost `inner_steps` batches, not all of them.

    With an outer SGD of learning rate epsilon this is exactly Reptile's theta += epsilon * (phi - theta).
    """

    name = "reptile"

    def __init__(self, inner_lr: float = 0.01, inner_steps: int = 5, inner_optimizer: str = "sgd") -> None:
        if inner_steps < 1:
            raise ValueError(f"Reptile needs inner_steps >= 1, got {inner_steps}")
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_optimizer = inner_optimizer
        self._scratch = ScratchCopy()

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        fast = self._scratch.load(model)
        opt = make_optimizer(self.inner_optimizer, fast.parameters(), self.inner_lr)
        batches = cycle_batches(
            ChainedData(task.support, task.query), f"task {task.name!r}", model_device(model)
        )
        losses = train_steps(fast, opt, batches, loss_fn, self.inner_steps)
        return MetaResult(gradient=displacement(model, fast), loss=losses[-1], buffers=snapshot_buffers(fast))

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.inner_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, self.inner_optimizer, self.inner_lr)

    def config(self) -> dict[str, object]:
        return {
            "name": self.name,
            "inner_lr": self.inner_lr,
            "inner_steps": self.inner_steps,
            "inner_optimizer": self.inner_optimizer,
        }
