"""Stop signals during training: SIGINT and SIGTERM are recorded and acted on between two iterations."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM only record their number in the yielded list (checked
    between iterations, so no step is cut in half); the previous handlers come back afterwards.

    Signals can only be caught in the main thread: elsewhere nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
