"""MAML and FOMAML through `torch.func`: the inner loop as pure functions of a parameter dict.

Two paths, the same maths as the `higher` backend (checked by tests/core/test_functional_maml.py):
- `task_meta_step`: one task with `functional_call` + `torch.autograd.grad` (any model: BatchNorm buffers,
  streamed batches, CUDA); no module copies, no monkey-patching, so little Python per step;
- `batched_meta_steps`: every task at once with `vmap` over `grad`, when the tasks are single batches of
  one shape and the model has no per-batch state (no BatchNorm or dropout in training mode), as in the
  sinusoid regime, where the per-task Python overhead is what costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from metalearn.algorithms.base import LossFn, MetaResult, model_device, named_trainable
from metalearn.task import Task, is_batch

Params = dict[str, Tensor]


@dataclass(frozen=True)
class InnerLoop:
    """The inner optimizer's settings: `steps` steps of `optimizer` (`"sgd"` or `"adam"`) at `lr`."""

    lr: float
    steps: int
    optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    first_order: bool = False


class _AdamState:
    """Adam's moments as plain tensors, updated out of place so second-order gradients flow through them.

    The update is higher's `DifferentiableAdam` (and torch.optim.Adam's): step size lr * sqrt(1 - b2^t) /
    (1 - b1^t), denominator sqrt(v) + eps; sqrt's gradient is zeroed where v == 0, as higher does.
    """

    def __init__(self, params: Params) -> None:
        self.step = 0
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()}


def _safe_sqrt(v: Tensor) -> Tensor:
    zero = v == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, v).sqrt())


def inner_update(params: Params, grads: Params, inner: InnerLoop, state: _AdamState | None) -> Params:
    """One inner optimizer step, out of place (differentiable unless the inputs are detached)."""
    if inner.optimizer == "sgd":
        return {k: p - inner.lr * grads[k] for k, p in params.items()}
    assert state is not None
    beta1, beta2 = inner.betas
    state.step += 1
    step_size = inner.lr * (1 - beta2**state.step) ** 0.5 / (1 - beta1**state.step)
    sqrt = torch.sqrt if inner.first_order else _safe_sqrt
    out = {}
    for k, p in params.items():
        g = grads[k]
        state.m[k] = m = state.m[k] * beta1 + (1 - beta1) * g
        state.v[k] = v = state.v[k] * beta2 + (1 - beta2) * g * g
        out[k] = p - step_size * m / (sqrt(v) + inner.eps)
    return out


def _grads_or_zeros(loss: Tensor, params: Params, create_graph: bool) -> Params:
    values = list(params.values())
    grads = torch.autograd.grad(loss, values, create_graph=create_graph, allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads)}


def task_meta_step(model: nn.Module, task: Task, loss_fn: LossFn, inner: InnerLoop) -> MetaResult:
    """One task's (FO)MAML meta-gradient with `functional_call`: any model, any batches, model untouched.

    The adapted copy's buffers start as clones of the model's and are updated by each forward, as in a
    module copy in training mode; they come back in `MetaResult.buffers`.
    """
    device = model_device(model)
    trainable = named_trainable(model)
    params: Params = dict(trainable)
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    fast: Params = (
        {k: p.detach().requires_grad_(True) for k, p in params.items()} if inner.first_order else params
    )
    state = _AdamState(fast) if inner.optimizer == "adam" else None
    support = task.support_batches(device)
    for _ in range(inner.steps):
        inputs, targets = next(support)
        loss = loss_fn(functional_call(model, (fast, buffers), (inputs,)), targets)
        grads = _grads_or_zeros(loss, fast, create_graph=not inner.first_order)
        if inner.first_order:
            with torch.no_grad():
                fast = inner_update(fast, grads, inner, state)
            fast = {k: p.requires_grad_(True) for k, p in fast.items()}
        else:
            fast = inner_update(fast, grads, inner, state)
    inputs, targets = next(task.query_batches(device))
    query_loss = loss_fn(functional_call(model, (fast, buffers), (inputs,)), targets)
    wrt = fast if inner.first_order else params
    gradient = {k: g.detach() for k, g in _grads_or_zeros(query_loss, wrt, create_graph=False).items()}
    return MetaResult(gradient=gradient, loss=query_loss.item(), buffers=buffers)


_PER_BATCH_STATE = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def can_batch(model: nn.Module, tasks: Sequence[Task]) -> bool:
    """True when `batched_meta_steps` applies: single-batch tasks of one shape, no BatchNorm statistics or
    dropout draws in training mode (they hold per-task state that `vmap` cannot carry)."""
    if len(tasks) < 2:
        return False
    if any(m.training for m in model.modules() if isinstance(m, _PER_BATCH_STATE)):
        return False
    shapes = set()
    for task in tasks:
        if not (is_batch(task.support) and is_batch(task.query)):
            return False
        shapes.add(tuple(tuple(t.shape) for t in (*task.support, *task.query)))
    return len(shapes) == 1


def batched_meta_steps(
    model: nn.Module, tasks: Sequence[Task], loss_fn: LossFn, inner: InnerLoop
) -> list[MetaResult]:
    """Every task's (FO)MAML meta-gradient in one `vmap` over tasks (see `can_batch` for when it applies)."""
    device = model_device(model)
    params: Params = {k: p.detach() for k, p in named_trainable(model)}
    buffers = {k: b.detach() for k, b in model.named_buffers()}  # evaluation-mode statistics: read only

    def stacked(which: str, index: int) -> Tensor:
        return torch.stack([getattr(t, which)[index] for t in tasks]).to(device, non_blocking=True)

    data = (stacked("support", 0), stacked("support", 1), stacked("query", 0), stacked("query", 1))

    def loss_at(p: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (p, buffers), (x,)), y)

    def adapt(p: Params, x: Tensor, y: Tensor) -> Params:
        state = _AdamState(p) if inner.optimizer == "adam" else None
        for _ in range(inner.steps):
            g = grad(loss_at)(p, x, y)
            p = inner_update(p, g, inner, state)
        return p

    if inner.first_order:

        def one_task(p: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Params, Tensor]:
            return grad_and_value(loss_at)(adapt(p, xs, ys), xq, yq)

    else:

        def one_task(p: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Params, Tensor]:
            return grad_and_value(lambda q: loss_at(adapt(q, xs, ys), xq, yq))(p)

    grads, losses = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *data)
    per_task = {k: g.unbind(0) for k, g in grads.items()}
    return [
        MetaResult(gradient={k: per_task[k][i] for k in params}, loss=loss, buffers=buffers)
        for i, loss in enumerate(losses.tolist())
    ]
