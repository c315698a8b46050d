"""(d) torchopt's `MetaSGD`."""

from __future__ import annotations

from metalearn.task import Task
from peers.base import Peer, Setting, TaskStream, mse, support_query


class TorchoptMetaSGD(Peer):
    """(d) torchopt's `MetaSGD`: differentiable in-place steps on the module, second-order MAML's maths."""

    name = "(d) torchopt MetaSGD MAML"

    def __init__(self, s: Setting, stream: TaskStream, steps: int) -> None:
        super().__init__(s, stream)
        import torchopt

        self.torchopt, self.k = torchopt, steps
        self.inner = torchopt.MetaSGD(self.model, lr=s.inner_lr)

    def task_gradients(self, tasks: list[Task]) -> None:
        state = self.torchopt.extract_state_dict(self.model, by="reference", detach_buffers=True)
        for task in tasks:
            support, query = support_query(task)
            for i in range(self.k):
                x, y = support[i % len(support)]
                self.inner.step(mse(self.model(x), y))
            x, y = query[0]
            mse(self.model(x), y).backward()
            self.torchopt.recover_state_dict(self.model, state)
