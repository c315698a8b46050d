"""MAML and FOMAML through `torch.func`: the inner loop as pure functions of a parameter dict.

Two paths, the same maths as the `higher` backend (checked by tests/core/test_functional_maml.py):
- `task_meta_step`: one task with `functional_call` + `torch.autograd.grad` (any model: BatchNorm buffers,
  streamed batches, CUDA); no module copies, no monkey-patching, so little Python per step;
- `batched_meta_steps`: every task at once with `vmap` over `grad`, when the tasks are single batches of
  one shape and the model has no per-batch state (no BatchNorm or dropout in training mode), as in the
  sinusoid regime, where the per-task Python overhead is what costs.
Both take Meta-SGD's learned per-element rates in place of the inner learning rate (`rates`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class AdamState:
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


def inner_update(
    params: Params, grads: Params, inner: InnerLoop, state: AdamState | None, rates: Params | None = None
) -> Params:
    """One inner optimizer step, out of place (differentiable unless the inputs are detached). `rates`, when
    given, are Meta-SGD's learned per-element learning rates (SGD with `rates[k]` in place of `inner.lr`)."""
    if rates is not None:
        return {k: p - rates[k] * grads[k] for k, p in params.items()}
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


def grads_or_zeros(loss: Tensor, params: Params, create_graph: bool) -> Params:
    values = list(params.values())
    grads = torch.autograd.grad(loss, values, create_graph=create_graph, allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads)}


def task_meta_step(
    model: nn.Module,
    task: Task,
    loss_fn: LossFn,
    inner: InnerLoop,
    rates: Params | None = None,
    rate_key: Callable[[str], str] = str,
) -> MetaResult:
    """One task's (FO)MAML meta-gradient with `functional_call`: any model, any batches, model untouched.

    The adapted copy's buffers start as clones of the model's and are updated by each forward, as in a
    module copy in training mode; they come back in `MetaResult.buffers`.

    `rates` (Meta-SGD) replace the inner learning rate by a learned tensor per parameter (same names and
    shapes); their gradients come back keyed `rate_key(name)`. First order, the inner gradients are constants
    but the rates stay in the graph: d loss / d rate = -(query gradient at phi) * (sum of the inner gradients).
    """
    device = model_device(model)
    params: Params = dict(named_trainable(model))
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    fast: Params = (
        {k: p.detach().requires_grad_(True) for k, p in params.items()} if inner.first_order else params
    )
    state = AdamState(fast) if inner.optimizer == "adam" and rates is None else None
    support = task.support_batches(device)
    for _ in range(inner.steps):
        inputs, targets = next(support)
        loss = loss_fn(functional_call(model, (fast, buffers), (inputs,)), targets)
        grads = grads_or_zeros(loss, fast, create_graph=not inner.first_order)
        if inner.first_order and rates is None:
            with torch.no_grad():
                fast = inner_update(fast, grads, inner, state)
            fast = {k: p.requires_grad_(True) for k, p in fast.items()}
        else:
            fast = inner_update(fast, grads, inner, state, rates)
    inputs, targets = next(task.query_batches(device))
    query_loss = loss_fn(functional_call(model, (fast, buffers), (inputs,)), targets)
    wrt = dict(fast if inner.first_order else params)
    wrt.update({rate_key(k): r for k, r in (rates or {}).items()})
    gradient = {k: g.detach() for k, g in grads_or_zeros(query_loss, wrt, create_graph=False).items()}
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
    model: nn.Module,
    tasks: Sequence[Task],
    loss_fn: LossFn,
    inner: InnerLoop,
    rates: Params | None = None,
    rate_key: Callable[[str], str] = str,
) -> list[MetaResult]:
    """Every task's (FO)MAML meta-gradient in one `vmap` over tasks (see `can_batch` for when it applies);
    `rates` and `rate_key` as in `task_meta_step` (Meta-SGD's rates are shared by the tasks)."""
    device = model_device(model)
    params: Params = {k: p.detach() for k, p in named_trainable(model)}
    lrs: Params = {k: r.detach() for k, r in (rates or {}).items()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}  # evaluation-mode statistics: read only

    def stacked(which: str, index: int) -> Tensor:
        return torch.stack([getattr(t, which)[index] for t in tasks]).to(device, non_blocking=True)

    data = (stacked("support", 0), stacked("support", 1), stacked("query", 0), stacked("query", 1))

    def loss_at(p: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (p, buffers), (x,)), y)

    def adapt(p: Params, r: Params | None, x: Tensor, y: Tensor) -> tuple[Params, Params]:
        """phi after the inner steps, and the sum of the inner gradients (first-order Meta-SGD needs it)."""
        state = AdamState(p) if inner.optimizer == "adam" and r is None else None
        total: Params = {}
        for _ in range(inner.steps):
            g = grad(loss_at)(p, x, y)
            if r is not None and inner.first_order:
                total = {k: total[k] + v for k, v in g.items()} if total else g
            p = inner_update(p, g, inner, state, r)
        return p, total

    Out = tuple[Params, Params, Tensor]  # gradients for the parameters, for the rates, and the query loss

    if inner.first_order:

        def one_task(p: Params, r: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Out:
            phi, total = adapt(p, r or None, xs, ys)
            g, loss = grad_and_value(loss_at)(phi, xq, yq)
            return g, {k: -g[k] * total[k] for k in r}, loss  # phi = theta - sum_k r * g_k, g_k constant

    else:

        def one_task(p: Params, r: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Out:
            def query_loss(q: Params, lr: Params) -> Tensor:
                return loss_at(adapt(q, lr or None, xs, ys)[0], xq, yq)

            (g, g_r), loss = grad_and_value(query_loss, argnums=(0, 1))(p, r)
            return g, g_r, loss

    grads, rate_grads, losses = vmap(one_task, in_dims=(None, None, 0, 0, 0, 0))(params, lrs, *data)
    per_task = {k: g.unbind(0) for k, g in grads.items()}
    per_task.update({rate_key(k): g.unbind(0) for k, g in rate_grads.items()})
    return [
        MetaResult(gradient={k: v[i] for k, v in per_task.items()}, loss=loss, buffers=buffers)
        for i, loss in enumerate(losses.tolist())
    ]
