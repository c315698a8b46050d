"""`metalearn fewshot train` stopped by Ctrl-C (a real process): exit 130, the notice at once, one line
naming the checkpoint and --resume, and `--resume` goes on from there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from metalearn.trainer.signals import STOPPING_NOTICE
from tests.fewshot.test_cli import run


def _args(tmp_path: Path, iterations: int, *extra: str) -> list[str]:
    return ["fewshot", "train", "--dataset", "glyphs", "--root", str(tmp_path / "glyphs"), "--algorithm", "maml",
            "--iterations", str(iterations), "--ways", "2", "--query", "1", "--tasks-per-batch", "1",
            "--hidden", "4", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run"), *extra]  # fmt: skip


def test_ctrl_c_checkpoints_exits_130_and_resume_goes_on(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoint" / "checkpoint.pt"
    metrics = checkpoint.parent / "metrics.csv"
    env = os.environ | {"OMP_NUM_THREADS": "1", "METALEARN_OUTPUT": str(tmp_path / "outputs")}
    args = _args(tmp_path, 1_000_000, "--inner-steps", "50")
    proc = subprocess.Popen([sys.executable, "-m", "metalearn.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300  # generous: the machine may be loaded; no timing is asserted
    try:
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):  # a logged iteration
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never logged an iteration"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert STOPPING_NOTICE.format("SIGINT").strip() in stderr and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "--resume" in errors[0], stderr
    done = torch.load(checkpoint, weights_only=True)["iteration"]
    assert 1 <= done < 1_000_000
    resumed = run(*_args(tmp_path, done + 1, "--inner-steps", "50", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(checkpoint, weights_only=True)["iteration"] == done + 1
