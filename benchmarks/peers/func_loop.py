"""A bare `torch.func` MAML (the sinusoid regime)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse


class FuncLoop(Peer):
    """A bare `torch.func` MAML: `vmap` over tasks of `grad` through one SGD step (sinusoid only)."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool) -> None:
        super().__init__(s, stream)
        self.name = f"bare torch.func {'FOMAML' if first_order else 'MAML'}"
        names = [n for n, _ in self.model.named_parameters()]
        model, lr = self.model, s.inner_lr

        def loss_at(p: dict, x: Tensor, y: Tensor) -> Tensor:
            return mse(functional_call(model, p, (x,)), y)

        def adapted(p: dict, xs: Tensor, ys: Tensor) -> dict:
            g = grad(loss_at)(p, xs, ys)
            return {k: v - lr * g[k] for k, v in p.items()}

        if first_order:

            def task_grad(p: dict, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> dict:
                return grad(loss_at)(adapted(p, xs, ys), xq, yq)
        else:

            def task_grad(p: dict, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> dict:
                return grad(lambda q: loss_at(adapted(q, xs, ys), xq, yq))(p)

        self.batched = vmap(task_grad, in_dims=(None, 0, 0, 0, 0))
        self.names = names

    def task_gradients(self, tasks: list[Task]) -> None:
        data = [torch.stack([getattr(t, w)[i] for t in tasks]) for w in ("support", "query") for i in (0, 1)]
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        grads = self.batched(params, *data)
        for n, p in zip(self.names, self.params):
            p.grad = grads[n].sum(0)
