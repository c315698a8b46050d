"""The non-meta baseline: plain multi-task training on all tasks' data pooled (no inner loop)."""

from __future__ import annotations

from torch import nn

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    check_optimizer_name,
    first_order_adapt,
    loss_gradients,
    model_device,
    named_trainable,
    preserved_buffers,
    snapshot_buffers,
)
from metalearn.task import Task, TaskData, concat_data


class Pretrain(MetaAlgorithm):
    """The 'meta-gradient' is the ordinary loss gradient on the task's support and query data together.

    Averaged over a meta-batch and stepped by the trainer's Adam, this is plain Adam training on pooled
    tasks: the ablation baseline of MetaIQA's Table 4 and the pre-training baseline of the sinusoid study.
    `adapt` fine-tunes with `adapt_optimizer` at `adapt_lr`, like the meta-learners' fine-tuning.
    """

    name = "baseline"
    uses_query = True

    def __init__(self, adapt_lr: float = 0.01, adapt_steps: int = 10, adapt_optimizer: str = "sgd") -> None:
        check_optimizer_name(adapt_optimizer)
        self.adapt_lr = adapt_lr
        self.adapt_steps = adapt_steps
        self.adapt_optimizer = adapt_optimizer

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        params = named_trainable(model)
        batches = concat_data(task.support, task.query) if self.uses_query else concat_data(task.support)
        with preserved_buffers(model):
            total = 0.0
            grads = None
            for inputs, targets in batches:
                loss = loss_fn(model(inputs.to(device)), targets.to(device)) / len(batches)
                step = loss_gradients(loss, [p for _, p in params])
                grads = step if grads is None else [a + b for a, b in zip(grads, step)]
                total += loss.item()
            buffers = snapshot_buffers(model)
        gradient = {name: g for (name, _), g in zip(params, grads)}  # type: ignore[arg-type]
        return MetaResult(gradient=gradient, loss=total, buffers=buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.adapt_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, self.adapt_optimizer, self.adapt_lr)

    def config(self) -> dict[str, object]:
        return {
            "name": self.name,
            "adapt_lr": self.adapt_lr,
            "adapt_steps": self.adapt_steps,
            "adapt_optimizer": self.adapt_optimizer,
        }


class Plain(Pretrain):
    """Ordinary training: the gradient of the loss on the task's support batches only (the query is unused).

    With one batch per task and one task per meta-batch, every outer step is one optimizer step on one
    batch: plain mini-batch training inside the same trainer (logging, checkpoints, schedules) as the
    meta-learners, so a comparison at equal forward/backward passes differs in the algorithm alone.
    """

    name = "plain"
    uses_query = False
