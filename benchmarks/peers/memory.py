"""Peak memory of one peer, measured alone in a subprocess (shared by meta_iteration.py and fewshot.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(run: Callable[[], object], times: int = 2, device: str = "cpu") -> float:
    """Peak memory growth (bytes) over `times` calls of `run`, from what is held before the first.

    On CUDA: `torch.cuda.max_memory_allocated` above what was allocated before. On the CPU the resident set,
    sampled every 0.5 ms by a thread (`ru_maxrss` would include the import and setup peaks)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(times):
            run()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    base, peak, done = current_rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(times):
        run()
    done.set()
    sampler.join()
    return float(max(peak[0], current_rss_bytes()) - base)


def tensor_peak(run: Callable[[], object], times: int = 2, device: str = "cpu") -> float:
    """Peak bytes of live tensors over `times` calls of `run`, above what was live before the first.

    On CUDA: `torch.cuda.max_memory_allocated`. On the CPU: the running sum of the allocations and frees
    that `torch.profiler` records (`profile_memory=True`), so what the allocator keeps cached (glibc's
    arenas, which the resident set includes) is left out: the memory the algorithm itself needs."""
    if device.startswith("cuda"):
        return peak_growth(run, times, device)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(times):
            run()
    results = prof.profiler.kineto_results if prof.profiler is not None else None
    assert results is not None, "torch.profiler recorded nothing"
    events = sorted((e for e in results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return float(peak)


def in_subprocesses(script: str, argv: list[str], names: list[str]) -> dict[str, list[float]]:
    """Run `script argv --memory-of NAME` for each name, one at a time; each prints its measurements
    (bytes, separated by spaces) on its last line."""
    out = {}
    for name in names:
        cmd = [sys.executable, script, *argv, "--memory-of", name]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = [float(x) for x in result.stdout.strip().splitlines()[-1].split()]
    return out
