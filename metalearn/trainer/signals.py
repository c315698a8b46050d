"""Stop signals during training: the first SIGINT or SIGTERM asks for a clean stop, a second one forces it.

The first request is recorded (`StopRequests.received`) and acted on at the next safe point: between two
iterations, or between two tasks of the current one when that step can be abandoned and replayed (see
`MetaTrainer.step`), so a long iteration does not hold the stop up. The trainer then saves a checkpoint and
raises `Interrupted`. A second request, while the first is being honoured, raises `ForcedStop` at once,
wherever the program is: every file the trainer writes is written atomically, so what is on disk stays a
complete earlier checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ForcedStop(KeyboardInterrupt):
    """A second stop signal: training stopped at once, without a new checkpoint (`signum`: the signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped at once by a second {signal.Signals(signum).name}")
        self.signum = signum


class StopRequests:
    """The stop signals received so far (`received`, in order); true once there is one."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.received)

    @property
    def first(self) -> int:
        """The first signal's number, 0 if none."""
        return self.received[0] if self.received else 0

    def record(self, signum: int, frame: Any = None) -> None:
        """Signal handler: note the first request; raise `ForcedStop` on the next."""
        if self.received:
            raise ForcedStop(signum)
        self.received.append(signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """While the block runs, SIGINT and SIGTERM go to a `StopRequests` (yielded); the previous handlers
    come back afterwards. Signals can only be caught in the main thread: elsewhere nothing changes."""
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {sig: signal.signal(sig, requests.record) for sig in STOP_SIGNALS}
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
