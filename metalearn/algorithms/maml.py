"""MAML (Finn et al., 2017): exact second-order meta-gradients, or FOMAML, through `torch.func` or `higher`."""

from __future__ import annotations

from collections.abc import Sequence

import higher
from torch import nn

from metalearn.algorithms import functional_maml
from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    check_optimizer_name,
    first_order_adapt,
    loss_gradients,
    make_optimizer,
    model_device,
    named_trainable,
    preserved_buffers,
)
from metalearn.task import Task, TaskData

BACKENDS = ("func", "higher")
"""How MAML differentiates its inner loop: `torch.func` (default, measured faster in
benchmarks/meta_iteration.py) or the `higher` package; both are held to the same parity tests."""


class MAML(MetaAlgorithm):
    """Differentiate the query loss through `inner_steps` differentiable optimizer steps on the support set.

    `first_order=True` drops the second-order terms (FOMAML): the meta-gradient is the query gradient at
    the adapted weights. `inner_optimizer="adam"` uses a differentiable Adam (higher's update rule).
    `backend` picks the machinery, not the maths (see `BACKENDS`): `"func"` batches tasks with `vmap`
    when they allow it (`functional_maml.can_batch`), else runs `functional_call` task by task.
    """

    name = "maml"

    def __init__(
        self,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        inner_optimizer: str = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
        backend: str = "func",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown MAML backend {backend!r}: choose 'func' or 'higher'")
        if inner_steps < 1:
            raise ValueError(f"MAML needs inner_steps >= 1, got {inner_steps}")
        check_optimizer_name(inner_optimizer)
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.inner_optimizer = inner_optimizer
        self.betas = betas
        self.backend = backend
        if first_order:
            self.name = "fomaml"

    def _inner_loop(self) -> functional_maml.InnerLoop:
        return functional_maml.InnerLoop(
            self.inner_lr, self.inner_steps, self.inner_optimizer, self.betas, first_order=self.first_order
        )

    def meta_steps(self, model: nn.Module, tasks: Sequence[Task], loss_fn: LossFn) -> list[MetaResult]:
        if self.backend == "func" and functional_maml.can_batch(model, tasks):
            return functional_maml.batched_meta_steps(model, tasks, loss_fn, self._inner_loop())
        return [self.meta_step(model, task, loss_fn) for task in tasks]

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        if self.backend == "func":
            return functional_maml.task_meta_step(model, task, loss_fn, self._inner_loop())
        device = model_device(model)
        params = named_trainable(model)
        opt = make_optimizer(self.inner_optimizer, [p for _, p in params], self.inner_lr, self.betas)
        with (
            preserved_buffers(model),
            higher.innerloop_ctx(
                model, opt, copy_initial_weights=False, track_higher_grads=not self.first_order
            ) as (fmodel, diffopt),
        ):
            support = task.support_batches(device)
            for _ in range(self.inner_steps):
                inputs, targets = next(support)
                diffopt.step(loss_fn(fmodel(inputs), targets))
            inputs, targets = next(task.query_batches(device))
            query_loss = loss_fn(fmodel(inputs), targets)
            if self.first_order:  # gradient at the adapted (fast) weights, matched to names by position
                fast = dict(zip((n for n, _ in model.named_parameters()), fmodel.parameters()))
                wrt = [fast[n] for n, _ in params]
            else:  # gradient through the inner loop, w.r.t. the initial weights
                wrt = [p for _, p in params]
            grads = loss_gradients(query_loss, wrt)
            buffers = {name: b.detach().clone() for name, b in fmodel.named_buffers()}
        gradient = {name: g for (name, _), g in zip(params, grads)}
        return MetaResult(gradient=gradient, loss=query_loss.item(), buffers=buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        steps = self.inner_steps if steps is None else steps
        return first_order_adapt(model, data, loss_fn, steps, self.inner_optimizer, self.inner_lr, self.betas)

    def config(self) -> dict[str, object]:
        return {
            "name": self.name,
            "inner_lr": self.inner_lr,
            "inner_steps": self.inner_steps,
            "first_order": self.first_order,
            "inner_optimizer": self.inner_optimizer,
        }


def FOMAML(  # noqa: N802
    inner_lr: float = 0.01, inner_steps: int = 1, inner_optimizer: str = "sgd", backend: str = "func"
) -> MAML:
    """First-order MAML: `MAML(first_order=True)`."""
    return MAML(
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        first_order=True,
        inner_optimizer=inner_optimizer,
        backend=backend,
    )
