"""ANIL (Raghu et al., 2020): MAML's inner loop on the head alone, over body features computed once per task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metalearn.algorithms.base import (
    LossFn,
    MetaAlgorithm,
    MetaResult,
    adapted_copy,
    as_betas,
    check_inner_steps,
    check_optimizer_name,
    make_optimizer,
    model_device,
    named_trainable,
)
from metalearn.algorithms.functional_maml import AdamState, InnerLoop, Params, grads_or_zeros, inner_update
from metalearn.algorithms.registry import register_algorithm
from metalearn.task import Task, TaskData, cycle_batches, is_batch


def find_head(model: nn.Module, head: str | None) -> tuple[str, nn.Module]:
    """The head's name and module: `head` (a dotted module name) or, by default, the model's last child."""
    if head is None:
        children = list(model.named_children())
        if not children:
            raise ValueError("anil: the model has no child module to adapt as its head; name one with head=")
        return children[-1]
    module = dict(model.named_modules()).get(head)
    if module is None or module is model:
        names = ", ".join(name for name, _ in model.named_children())
        raise ValueError(f"anil: head {head!r} is not a module of the model (its children: {names})")
    return head, module


class HeadFeatures:
    """Runs the model once and keeps what its head received (the body's features) and returned.

    ANIL needs `model(x) = head(features)`, up to a reshape of the head's output (as a `squeeze(-1)`):
    anything else (a head called twice, an output computed after the head) is refused, one line.
    """

    def __init__(self, name: str, head: nn.Module) -> None:
        self.name, self.head = name, head
        self.calls: list[tuple[tuple[Any, ...], Tensor]] = []

    def __call__(self, model: nn.Module, state: Any, inputs: Tensor) -> tuple[Tensor, torch.Size | None]:
        """`(features, shape)`: the head's input, and the shape to give the head's output (None: as is)."""
        self.calls.clear()
        handle = self.head.register_forward_hook(lambda _module, args, out: self.calls.append((args, out)))
        try:
            out = functional_call(model, state, (inputs,)) if state is not None else model(inputs)
        finally:
            handle.remove()
        if len(self.calls) != 1 or len(self.calls[0][0]) != 1 or not isinstance(self.calls[0][0][0], Tensor):
            raise ValueError(f"anil: head {self.name!r} must run once per forward pass, on one tensor")
        (features,), head_out = self.calls[0]
        self.calls.clear()
        if out is head_out:
            return features, None
        if (  # a reshape of the head's output: same memory, same size, both contiguous
            isinstance(head_out, Tensor)
            and out.data_ptr() == head_out.data_ptr()
            and out.numel() == head_out.numel()
            and out.is_contiguous()
            and head_out.is_contiguous()
        ):
            return features, out.shape
        raise ValueError(
            f"anil: the model's output is not the output of its head {self.name!r} (ANIL needs model(x) = "
            "head(body(x)), up to a reshape); name the last module with head="
        )


def _shaped(out: Tensor, shape: torch.Size | None) -> Tensor:
    return out if shape is None else out.reshape(shape)


@register_algorithm("anil")
@dataclass(eq=False)
class ANIL(MetaAlgorithm):
    """ANIL, "almost no inner loop" (Raghu, Raghu, Bengio and Vinyals, 2020, "Rapid Learning or Feature
    Reuse? Towards Understanding the Effectiveness of MAML", https://arxiv.org/abs/1909.09157): MAML whose
    inner loop adapts only the head (the last layer); the body is meta-learned by the outer loop alone.

    The body does not change in the inner loop, so its support features are computed once per task (per
    support batch drawn, when the support set is streamed) and the inner steps run on the head alone: the
    inner loop costs head passes, not network passes. The meta-gradient covers every parameter: the body's
    comes through the query loss and, second order, through the inner loop (the head's steps depend on the
    body's features). BatchNorm in the body sees each support batch once, then the query batch.

    Arguments:
    - `inner_lr`, `inner_steps` (at least 1), `inner_optimizer` (`"sgd"` or `"adam"`, the differentiable
      Adam of `MAML`), `betas`: the head's inner loop, which `adapt` reuses.
    - `first_order`: drop the second-order terms (the head's meta-gradient is its query gradient at the
      adapted head; the body's is its query gradient).
    - `head`: the dotted name of the head module (default: the model's last child module, e.g. the final
      `Linear` of a `Sequential`). The model's output must be the head's output (up to a reshape).

    Example:

        anil = ANIL(inner_lr=0.1, inner_steps=5)            # or get_algorithm("anil", head="classifier")
        gradient = anil.meta_gradient(model, task, torch.nn.functional.cross_entropy)
        adapted = anil.adapt(model, task.support, torch.nn.functional.cross_entropy, steps=10)
    """

    inner_lr: float = 0.01
    inner_steps: int = 1
    first_order: bool = False
    inner_optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    head: str | None = None

    def __post_init__(self) -> None:
        check_inner_steps(self.inner_steps, "ANIL")
        check_optimizer_name(self.inner_optimizer)
        self.betas = as_betas(self.betas)
        if self.head is not None and (not isinstance(self.head, str) or not self.head):
            raise ValueError(f"anil: head must name a module of the model, got {self.head!r}")

    def passes_per_task(self, batches: int) -> int:
        # one support batch drawn per inner step (the body runs once per distinct batch), then one query
        return self.inner_steps + 1

    def _split(self, model: nn.Module) -> tuple[str, nn.Module, list[str]]:
        name, head = find_head(model, self.head)
        prefix = name + "."
        head_names = [n for n, _ in named_trainable(model) if n.startswith(prefix)]
        if not head_names:
            raise ValueError(f"anil: head {name!r} has no trainable parameters to adapt")
        return name, head, head_names

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        device = model_device(model)
        name, head, head_names = self._split(model)
        prefix = name + "."
        features_of = HeadFeatures(name, head)
        inner = InnerLoop(
            self.inner_lr, self.inner_steps, self.inner_optimizer, self.betas, first_order=self.first_order
        )
        params: Params = dict(named_trainable(model))
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}  # the adapted copy's statistics
        head_buffers = {k.removeprefix(prefix): b for k, b in buffers.items() if k.startswith(prefix)}
        fast: Params = {k.removeprefix(prefix): params[k] for k in head_names}
        if self.first_order:
            fast = {k: p.detach().requires_grad_(True) for k, p in fast.items()}
        state = AdamState(fast) if self.inner_optimizer == "adam" else None
        support = task.support_batches(device)
        features: Tensor | None = None
        shape: torch.Size | None = None
        for _ in range(self.inner_steps):
            inputs, targets = next(support)
            if features is None or not is_batch(task.support):  # a single batch: its features once
                with torch.set_grad_enabled(not self.first_order and torch.is_grad_enabled()):
                    features, shape = features_of(model, (params, buffers), inputs)
            out = functional_call(head, (fast, head_buffers), (features,))
            loss = loss_fn(_shaped(out, shape), targets)
            grads = grads_or_zeros(loss, fast, create_graph=not self.first_order)
            if self.first_order:
                with torch.no_grad():
                    fast = inner_update(fast, grads, inner, state)
                fast = {k: p.requires_grad_(True) for k, p in fast.items()}
            else:
                fast = inner_update(fast, grads, inner, state)
        inputs, targets = next(task.query_batches(device))
        adapted = {**params, **{prefix + k: p for k, p in fast.items()}}
        query_loss = loss_fn(functional_call(model, (adapted, buffers), (inputs,)), targets)
        wrt = adapted if self.first_order else params  # first order: the body's own, the adapted head's
        gradient = {k: g.detach() for k, g in grads_or_zeros(query_loss, wrt, create_graph=False).items()}
        return MetaResult(gradient=gradient, loss=query_loss.item(), buffers=buffers)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        """A copy of `model` (its mode kept) whose head took `steps` first-order optimizer steps on the body's
        features of `data` (computed once for a single batch); the body is the model's."""
        steps = self.inner_steps if steps is None else steps
        adapted = adapted_copy(model)
        name, head, head_names = self._split(adapted)
        features_of = HeadFeatures(name, head)
        params = dict(adapted.named_parameters())
        optimizer = make_optimizer(
            self.inner_optimizer, [params[n] for n in head_names], self.inner_lr, self.betas
        )
        batches = cycle_batches(data, "adaptation data", model_device(model))
        features: Tensor | None = None
        shape: torch.Size | None = None
        for _ in range(steps):
            inputs, targets = next(batches)
            if features is None or not is_batch(data):
                with torch.no_grad():
                    features, shape = features_of(adapted, None, inputs)
            loss = loss_fn(_shaped(head(features), shape), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return adapted
