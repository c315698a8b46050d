"""benchmarks/fewshot.py end to end at tiny sizes: parity with learn2learn passes, every peer is timed, the
ratios and the memory subprocesses come back; bad options are refused in one line before any work."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fewshot.py"
OURS = ["maml", "fomaml", "anil", "metasgd", "protonet"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_quick_run_checks_parity_times_every_peer_and_measures_memory(tmp_path: Path) -> None:
    pytest.importorskip("learn2learn")
    out = tmp_path / "fewshot.json"
    done = run("--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| maml |" in done.stdout and "| l2l / ours (CPU) |" in done.stdout
    report = json.loads(out.read_text())
    assert set(report["parity_max_abs_difference"]) == set(OURS)
    assert all(d <= 1e-9 for d in report["parity_max_abs_difference"].values())
    peers = [*OURS, *(f"l2l-{n}" for n in OURS), "plain"]
    assert list(report["seconds"]) == peers
    assert all(len(report["samples"][p]) == 2 and report["seconds"][p] > 0 for p in peers)
    speed = report["speed_vs_l2l"]
    assert set(speed) == set(OURS) and all(math.isfinite(r) and r > 0 for r in speed.values())
    assert set(report["memory_bytes"]) == {"fomaml", "plain"}
    assert all(m > 0 for m in report["memory_bytes"].values())
    assert report["memory_vs_plain"]["plain"] == 1.0
    assert set(report["tensor_peak_bytes"]) == {"fomaml", "plain"}
    assert all(m > 0 for m in report["tensor_peak_bytes"].values())
    assert all(len(report["cpu_samples"][p]) == 2 and report["cpu_seconds"][p] > 0 for p in peers)
    assert set(report["speed_vs_l2l_cpu"]) == set(OURS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peers", "maml,nope"], "--peers: unknown peer(s) nope"),
        (["--size", "8"], "--size must be at least"),
    ],
)
def test_bad_options_are_refused_in_one_line(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
