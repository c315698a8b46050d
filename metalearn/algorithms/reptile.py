"""Reptile (Nichol et al., 2018): the meta-gradient is the displacement theta - phi after inner steps."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    ScratchCopy,
    as_betas,
    check_inner_steps,
    check_optimizer_name,
    displacement,
    first_order_adapt,
    make_optimizer,
    model_device,
    snapshot_buffers,
    train_steps,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import ChainedData, Task, TaskData, cycle_batches


@register_algorithm("reptile")
@dataclass(eq=False)
class Reptile(MetaAlgorithm):
    """Reptile (Nichol, Achiam and Schulman, 2018, "On First-Order Meta-Learning Algorithms",
    https://arxiv.org/abs/1803.02999): `inner_steps` optimizer steps on the task's whole data (support
    batches, then query batches, cycled); the meta-gradient is the displacement theta - phi.

    Batches are drawn lazily, one per step: streamed sets cost `inner_steps` batches, not all of them.
    With an outer SGD of learning rate epsilon this is exactly Reptile's theta += epsilon * (phi - theta).

    Arguments: `inner_lr`, `inner_steps` (at least 1), `inner_optimizer` (`"sgd"` or `"adam"`) and `betas`
    (Adam's) of the inner loop, which `adapt` reuses for fine-tuning.

    Example:

        reptile = Reptile(inner_lr=0.01, inner_steps=5)
        trainer = MetaTrainer(model, algorithm=reptile, sampler=sampler,
                              config=TrainerConfig(outer_optimizer="sgd", outer_lr=0.1))
    """

    inner_lr: float = 0.01
    inner_steps: int = 5
    inner_optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, "Reptile")
        check_optimizer_name(self.inner_optimizer)
        self.betas = as_betas(self.betas)
        self._scratch = ScratchCopy()

    def passes_per_task(self, batches: int) -> int:
        return self.inner_steps  # one batch per step, over support then query

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        fast = self._scratch.load(model)
        opt = make_optimizer(self.inner_optimizer, fast.parameters(), self.inner_lr, self.betas)
        batches = cycle_batches(
            ChainedData(task.support, task.query), f"task {task.name!r}", model_device(model)
        )
        last = train_steps(fast, opt, batches, loss_fn, self.inner_steps)
        return MetaResult(
            gradient=displacement(model, fast), loss=last.item(), buffers=snapshot_buffers(fast)
        )

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.inner_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, self.inner_optimizer, self.inner_lr, self.betas)
