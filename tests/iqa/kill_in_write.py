"""Test helper (not a test): run `metalearn ARGS...` and SIGKILL it inside its Nth durable file write.

Usage: `python kill_in_write.py N ARGS...`. Every atomic write (`metalearn.checkpoint.atomic_write_bytes`)
fsyncs its temporary file before renaming it; the Nth `os.fsync` cuts that file to half its size and the
process kills itself, leaving a torn temporary file, as a power cut or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

from metalearn.cli import main

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


def kill_at(nth: int) -> None:
    real, calls = os.fsync, [0]

    def fsync(fd: FileDescriptorLike) -> None:
        calls[0] += 1
        if calls[0] == nth:
            number = fd if isinstance(fd, int) else fd.fileno()
            os.ftruncate(number, os.fstat(number).st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        real(fd)

    os.fsync = fsync


if __name__ == "__main__":
    kill_at(int(sys.argv[1]))
    sys.argv = ["metalearn", *sys.argv[2:]]
    main()
