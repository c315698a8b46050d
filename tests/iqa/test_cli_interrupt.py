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
    lines = [line for line in stderr.splitlines() if line.strip() and "meta-train" not in line]
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
