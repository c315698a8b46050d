"""(b) the `higher` package used directly."""

from __future__ import annotations

import torch

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse, support_query


class Higher(Peer):
    """(b) `higher` directly: `innerloop_ctx` with SGD, k differentiable steps, query loss backward."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool, steps: int) -> None:
        super().__init__(s, stream)
        self.name = f"(b) higher {'FOMAML' if first_order else 'MAML'}"
        self.k, self.first_order = steps, first_order
        self.inner = torch.optim.SGD(self.params, lr=s.inner_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        import higher

        for task in tasks:
            support, query = support_query(task)
            with higher.innerloop_ctx(
                self.model, self.inner, copy_initial_weights=False, track_higher_grads=not self.first_order
            ) as (fmodel, diffopt):
                for i in range(self.k):
                    x, y = support[i % len(support)]
                    diffopt.step(mse(fmodel(x), y))
                x, y = query[0]
                loss = mse(fmodel(x), y)
                if self.first_order:
                    grads = torch.autograd.grad(loss, list(fmodel.parameters()))
                    for p, g in zip(self.params, grads):
                        p.grad = g if p.grad is None else p.grad + g
                else:
                    loss.backward()
