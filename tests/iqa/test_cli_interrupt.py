"""`iqa train` stopped by SIGINT or SIGTERM: exit 130 or 143, one line naming the checkpoint, and `--resume`
finishes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearn.trainer.signals import STOPPING_NOTICE
from tests.iqa.test_cli import SMALL_FAST, run


def command(root: Path, out: Path, iterations: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "metalearn.cli", "iqa", "train", "--dataset", "kadid10k", "--root", str(root),
        *SMALL_FAST, "--iterations", str(iterations), "--out", str(out), *extra,
    ]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "OMP_NUM_THREADS": "1",
        "METALEARN_OUTPUT": str(tmp_path / "outputs"),
        "METALEARN_DATA": str(tmp_path / "data"),
    }


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "prior.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_resume_finishes_exactly(
    signum: signal.Signals, code: int, kadid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `metalearn iqa train` process; the resumed and the straight runs go through Click's runner
    in this process (one thread, like the subprocess), which keeps the test fast."""
    env = environment(tmp_path)
    out = tmp_path / "run"
    metrics = out / "checkpoint" / "metrics.csv"
    proc = subprocess.Popen(
        command(kadid_root, out, 100_000),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):  # a header and a row
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never logged a row"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert STOPPING_NOTICE.format(signum.name).strip() in stderr  # said at once, before the stop
    noise = ("meta-train", "note: ", "stopping at the next safe point")  # progress, notes, the notice
    lines = [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]
    assert len(lines) == 1 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert signum.name in lines[0] and str(out / "checkpoint") in lines[0] and "--resume" in lines[0]
    done = torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)["iteration"]
    assert 1 <= done < 100_000 and not (out / "prior.pt").exists()

    for name in ("METALEARN_OUTPUT", "METALEARN_DATA"):
        monkeypatch.setenv(name, env[name])
    resumed = run(*command(kadid_root, out, done + 2, "--resume")[3:])
    assert resumed.exit_code == 0, resumed.output
    straight = run(*command(kadid_root, tmp_path / "straight", done + 2)[3:])
    assert straight.exit_code == 0, straight.output
    resumed_to = torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)["iteration"]
    assert resumed_to == done + 2, "the resumed run did not continue to the new budget"
    logged = (out / "checkpoint" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in logged] == list(range(1, done + 3)), "metrics lost or repeated"
    a, b = weights(out), weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed prior differs from an uninterrupted run"


def _wait_for(predicate: object, proc: subprocess.Popen[str], what: str) -> None:
    """Wait (generously: the machine may be loaded) until `predicate()`, the process still running."""
    deadline = time.monotonic() + 300
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def test_a_second_sigint_stops_a_long_iteration_at_once_and_leaves_files_whole(
    kadid_root: Path, tmp_path: Path
) -> None:
    """Tasks of hundreds of inner steps: the first Ctrl-C (acknowledged on stderr at once) must wait for the
    task in progress; the second stops there and then, exit 130, no traceback, every file whole."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    checkpoint = out / "checkpoint" / "checkpoint.pt"
    long = command(kadid_root, out, 100_000, "--inner-steps", "300", "--checkpoint-every", "1")
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            long, env=environment(tmp_path), stdout=subprocess.DEVNULL, stderr=stderr, text=True
        )
        try:
            _wait_for(checkpoint.is_file, proc, "a first checkpoint")  # a second stop then keeps it
            proc.send_signal(signal.SIGINT)
            _wait_for(lambda: "stopping at the next safe point" in log.read_text(), proc, "the first notice")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    last = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("Error: ")]
    assert len(last) == 1 and ("second SIGINT" in last[0] or "--resume" in last[0]), text
    state = torch.load(checkpoint, weights_only=True)  # whole: it loads
    assert state["iteration"] >= 1 and not list(out.rglob(".*.tmp")) and not (out / "prior.pt").exists()
