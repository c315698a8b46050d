"""(c) the MetaIQA authors' loop."""

from __future__ import annotations

import copy

import torch

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse, support_query


class Naive(Peer):
    """(c) The MetaIQA authors' loop: deep-copy the model and build a new Adam for every task; k Adam steps
    on support, then k on query, the query gradients averaged (MetaIQA's maths)."""

    name = "(c) naive deepcopy+Adam"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        self.k = steps

    def task_gradients(self, tasks: list[Task]) -> None:
        for task in tasks:
            support, query = support_query(task)
            fast = copy.deepcopy(self.model)
            opt = torch.optim.Adam(fast.parameters(), lr=self.s.adam_lr, betas=self.s.betas)
            for x, y in support[: self.k]:
                opt.zero_grad()
                mse(fast(x), y).backward()
                opt.step()
            for x, y in query[: self.k]:
                opt.zero_grad()
                mse(fast(x), y).backward()
                for p, q in zip(self.params, fast.parameters()):
                    assert q.grad is not None
                    g = q.grad / self.k
                    p.grad = g.clone() if p.grad is None else p.grad + g
                opt.step()
