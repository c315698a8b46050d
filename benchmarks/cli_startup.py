"""How long the `metalearn` command takes to print its help, and how much memory it takes.

    python benchmarks/cli_startup.py [--repeats 7]

Each command runs in a fresh process (what a user typing it gets); the median wall time and the largest
resident set over the repeats are printed. Target: `metalearn --help` within 0.5 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

COMMANDS = (["--help"], ["iqa", "--help"], ["fewshot", "--help"], ["algorithms"])


def _run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `metalearn ARGV` in a new process."""
    exe = shutil.which("metalearn", path=os.path.dirname(sys.executable)) or "metalearn"
    start = time.perf_counter()
    pid = os.posix_spawn(
        exe, [exe, *argv], os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    )
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"metalearn {' '.join(argv)} failed")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'command':28s} {'median wall':>12s} {'max RSS':>10s}")
    for argv in COMMANDS:
        try:
            runs = [_run(argv) for _ in range(args.repeats)]
        except SystemExit as exc:
            print(f"{'metalearn ' + ' '.join(argv):28s} skipped ({exc})")
            continue
        wall = statistics.median(w for w, _ in runs)
        rss = max(r for _, r in runs)
        print(f"{'metalearn ' + ' '.join(argv):28s} {wall:10.3f} s {rss:7.0f} MiB")


if __name__ == "__main__":
    main()
