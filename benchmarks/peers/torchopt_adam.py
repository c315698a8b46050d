"""(d) torchopt's functional Adam."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse, support_query


class TorchoptAdam(Peer):
    """(d) torchopt's functional Adam on a parameter tuple (MetaIQA's maths, first order)."""

    name = "(d) torchopt functional Adam"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        import torchopt

        self.torchopt, self.k = torchopt, steps
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]

    def task_gradients(self, tasks: list[Task]) -> None:
        tx = self.torchopt.adam(lr=self.s.adam_lr, betas=self.s.betas)
        buffers = dict(self.model.named_buffers())
        for task in tasks:
            support, query = support_query(task)
            params = tuple(p.detach().requires_grad_(True) for p in self.params)
            state = tx.init(params)

            def loss_at(ps: tuple, x: Tensor, y: Tensor) -> Tensor:
                return mse(functional_call(self.model, ({**dict(zip(self.names, ps)), **buffers}), (x,)), y)

            for x, y in support[: self.k]:
                grads = torch.autograd.grad(loss_at(params, x, y), params)
                updates, state = tx.update(grads, state, inplace=False)
                params = tuple(
                    t.detach().requires_grad_(True)
                    for t in self.torchopt.apply_updates(params, updates, inplace=False)
                )
            for x, y in query[: self.k]:
                grads = torch.autograd.grad(loss_at(params, x, y), params)
                for p, g in zip(self.params, grads):
                    p.grad = g / self.k if p.grad is None else p.grad + g / self.k
                updates, state = tx.update(grads, state, inplace=False)
                params = tuple(
                    t.detach().requires_grad_(True)
                    for t in self.torchopt.apply_updates(params, updates, inplace=False)
                )
