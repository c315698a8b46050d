"""The non-meta baselines: plain training, on every task's data pooled or batch by batch (no inner loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

# The same helper list as l2l.py's import (flagged by `duplicates`): shared building blocks, no repeated code.
from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    as_betas,
    check_optimizer_name,
    first_order_adapt,
    loss_gradients,
    model_device,
    named_trainable,
    preserved_buffers,
    snapshot_buffers,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData, concat_data


@register_algorithm("pooled-baseline")
@dataclass(eq=False)
class Pretrain(MetaAlgorithm):
    """Multi-task pre-training, the baseline every meta-learning paper compares with (e.g. Finn et al., 2017,
    Section 5.1; MetaIQA's Table 4 ablation): the 'meta-gradient' is the ordinary loss gradient on the task's
    support and query data together, so a meta-batch is one optimizer step on the pooled tasks.

    Arguments: `adapt_lr`, `adapt_steps`, `adapt_optimizer` (`"sgd"` or `"adam"`) and `adapt_betas` (Adam's)
    set `adapt`'s fine-tuning, like the meta-learners' fine-tuning; training itself has no inner loop.

    Example:

        baseline = Pretrain(adapt_lr=0.01, adapt_steps=10)
        trainer = MetaTrainer(model, algorithm=baseline, sampler=sampler)   # plain Adam on pooled tasks
    """

    uses_query: ClassVar[bool] = True
    adapt_lr: float = 0.01
    adapt_steps: int = 10
    adapt_optimizer: str = "sgd"
    adapt_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_optimizer_name(self.adapt_optimizer)
        self.adapt_betas = as_betas(self.adapt_betas)

    def passes_per_task(self, batches: int) -> int:
        return 2 * batches if self.uses_query else batches  # every batch of the pooled sets, once

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        params = named_trainable(model)
        batches = concat_data(task.support, task.query) if self.uses_query else concat_data(task.support)
        with preserved_buffers(model):
            total = torch.zeros((), device=device)
            grads = [torch.zeros_like(p) for _, p in params]
            for inputs, targets in batches:
                loss = loss_fn(model(inputs.to(device)), targets.to(device)) / len(batches)
                step = loss_gradients(loss, [p for _, p in params])
                grads = [a + b for a, b in zip(grads, step)]
                total = total + loss.detach()  # summed on the device: no sync per batch
            buffers = snapshot_buffers(model)
        gradient = {name: g for (name, _), g in zip(params, grads)}
        return MetaResult(gradient=gradient, loss=total.item(), buffers=buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.adapt_steps if steps is None else steps
        return first_order_adapt(
            model, data, loss_fn, steps, self.adapt_optimizer, self.adapt_lr, self.adapt_betas
        )


@register_algorithm("baseline")
@dataclass(eq=False)
class Plain(Pretrain):
    """Ordinary training: the gradient of the loss on the task's support batches only (the query is unused).

    With one batch per task and one task per meta-batch, every outer step is one optimizer step on one
    batch: plain mini-batch training inside the same trainer (logging, checkpoints, schedules) as the
    meta-learners, so a comparison at equal forward/backward passes differs in the algorithm alone (the
    ablation baseline of MetaIQA's Table 4, Zhu et al., CVPR 2020). Arguments as `Pretrain`'s.

    Example:

        plain = Plain(adapt_lr=1e-3, adapt_optimizer="adam")
        trainer = MetaTrainer(model, algorithm=plain, sampler=one_batch_sampler, tasks_per_batch=1)
    """

    uses_query: ClassVar[bool] = False
