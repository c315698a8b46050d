"""(e): plain Adam steps on one model, the floor a first-order meta-iteration is compared with."""

from __future__ import annotations

from peers.base import Peer, Setting, TaskStream, mse


class Plain(Peer):
    """(e): `n` plain Adam steps on one model, one batch each (the batches the meta-iteration reads)."""

    def __init__(self, s: Setting, stream: TaskStream, n: int) -> None:
        super().__init__(s, stream)
        self.name, self.n = f"(e) plain x{n}", n
        tasks = stream.sample(s.tasks)
        batches = [b for t in tasks for b in [*t.support, *t.query]]
        self.batches = [batches[i % len(batches)] for i in range(n)]

    def iterate(self) -> None:
        for x, y in self.batches:
            loss = mse(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
