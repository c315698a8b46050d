"""MAML (Finn et al., 2017): exact second-order meta-gradients, or FOMAML, through `torch.func` or `higher`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import higher
from torch import nn

from metalearn.algorithms import functional_maml
from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    adapt_steps,
    as_betas,
    check_inner_steps,
    check_optimizer_name,
    check_rate,
    first_order_adapt,
    loss_gradients,
    make_optimizer,
    model_device,
    named_trainable,
    preserved_buffers,
)
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData

BACKENDS = ("func", "higher")
"""How MAML differentiates its inner loop: `torch.func` (default, measured faster in
benchmarks/meta_iteration.py) or the `higher` package; both are held to the same parity tests."""


@register_algorithm("maml")
@dataclass(eq=False)
class MAML(MetaAlgorithm):
    """MAML (Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    https://arxiv.org/abs/1703.03400): differentiate the query loss through `inner_steps` differentiable
    optimizer steps on the support set (exact second-order meta-gradient, through `torch.func` or `higher`).

    Arguments:
    - `inner_lr`: the inner (adaptation) learning rate.
    - `inner_steps`: inner steps per task, one support batch each (at least 1).
    - `first_order`: drop the second-order terms (FOMAML): the meta-gradient is the query gradient at the
      adapted weights.
    - `inner_optimizer`: `"sgd"` or `"adam"` (higher's differentiable Adam).
    - `betas`: the inner Adam's betas (with `inner_optimizer="adam"`).
    - `backend`: the machinery, not the maths (see `BACKENDS`): `"func"` batches tasks with `vmap` when
      they allow it (`functional_maml.can_batch`), else runs `functional_call` task by task; `"higher"`
      uses the `higher` package. Not part of `config()`: a run may resume on either backend.

    Example:

        maml = MAML(inner_lr=0.01, inner_steps=1)
        gradient = maml.meta_gradient(model, task, loss_fn)   # {parameter name: meta-gradient}
        adapted = maml.adapt(model, task.support, loss_fn)    # a fine-tuned copy; model is untouched
    """

    inner_lr: float = 0.01
    inner_steps: int = 1
    first_order: bool = False
    inner_optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    backend: str = field(default="func", metadata={"config": False})

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, type(self).__name__)
        check_rate(self.inner_lr, "inner_lr", type(self).__name__)
        check_optimizer_name(self.inner_optimizer)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown MAML backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        self.betas = as_betas(self.betas)

    def _inner_loop(self) -> functional_maml.InnerLoop:
        return functional_maml.InnerLoop(
            self.inner_lr, self.inner_steps, self.inner_optimizer, self.betas, first_order=self.first_order
        )

    def meta_steps(self, model: nn.Module, tasks: Sequence[Task], loss_fn: LossFn) -> Iterable[MetaResult]:
        if self.backend == "func" and functional_maml.can_batch(model, tasks):
            return functional_maml.batched_meta_steps(model, tasks, loss_fn, self._inner_loop())
        return super().meta_steps(model, tasks, loss_fn)

    def passes_per_task(self, batches: int) -> int:
        return self.inner_steps + 1  # one support batch per inner step, then one query batch

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
        steps = adapt_steps(steps, self.inner_steps)
        return first_order_adapt(model, data, loss_fn, steps, self.inner_optimizer, self.inner_lr, self.betas)


@register_algorithm("fomaml")
@dataclass(eq=False)
class FOMAML(MAML):
    """First-order MAML (Finn et al., 2017, Section 5.2): `MAML` with `first_order=True` always.

    Arguments as `MAML`'s, without `first_order`. Example: `FOMAML(inner_lr=0.01, inner_steps=5)`.
    """

    first_order: bool = field(default=True, init=False)
