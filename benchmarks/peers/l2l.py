"""(a) learn2learn's MAML."""

from __future__ import annotations

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse, support_query


class L2L(Peer):
    """(a) learn2learn's MAML: clone, `adapt` k times, query loss backward into the meta-model's `.grad`."""

    def __init__(self, s: Setting, stream: TaskStream, first_order: bool, steps: int) -> None:
        super().__init__(s, stream)
        import learn2learn as l2l

        self.name = f"(a) l2l MAML{'(first_order)' if first_order else ''}"
        self.k = steps
        self.maml = l2l.algorithms.MAML(self.model, lr=s.inner_lr, first_order=first_order)

    def task_gradients(self, tasks: list[Task]) -> None:
        for task in tasks:
            support, query = support_query(task)
            learner = self.maml.clone()
            for i in range(self.k):
                x, y = support[i % len(support)]
                learner.adapt(mse(learner(x), y))
            x, y = query[0]
            mse(learner(x), y).backward()
