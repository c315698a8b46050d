"""`iqa train` killed (SIGKILL, seeded moments, inside checkpoint writes too) or stopped (SIGINT), then
`--resume`d: the prior equals an uninterrupted run's bit for bit, and killed writes' temp files are gone.

The killed runs are subprocesses; the resumed and the uninterrupted runs go through Click's runner in this
process (one thread, like the subprocess), which keeps the tests fast.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearn_iqa.prior import ALGORITHMS
from tests.iqa.test_cli import SMALL_FAST, run
from tests.iqa.test_cli_interrupt import command, environment, weights

KILL_IN_WRITE = Path(__file__).with_name("kill_in_write.py")
ITERATIONS = 4
WRITES_PER_CHECKPOINT = 3  # config.json, checkpoint.pt, model.pt


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def train_here(root: Path, out: Path, iterations: int, *extra: str) -> None:
    """`iqa train` in this process (what the killed subprocess runs, minus the kill)."""
    args = ["--dataset", "kadid10k", "--root", str(root), *SMALL_FAST, "--iterations", str(iterations)]
    result = run("iqa", "train", *args, "--out", str(out), *extra)
    assert result.exit_code == 0, result.output


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


def assert_same_prior(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), "resumed prior differs from a straight run"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_killed_inside_a_write_then_resumed_is_exact(
    algorithm: str, kadid_root: Path, tmp_path: Path
) -> None:
    # the periodic checkpoints' writes, then the final checkpoint's, prior.pt and prior.json: kill in one
    nth = random.Random(f"kill {algorithm}").randint(1, (ITERATIONS + 1) * WRITES_PER_CHECKPOINT + 2)
    out = tmp_path / "run"
    args = command(kadid_root, out, ITERATIONS, "--algorithm", algorithm, "--checkpoint-every", "1")[1:]
    killed = subprocess.run(
        [sys.executable, str(KILL_IN_WRITE), str(nth), *args[2:]],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, (nth, killed.stderr)
    assert temp_files(out), "the kill inside a write left no temporary file"
    assert not (out / "prior.json").exists()

    every = ["--algorithm", algorithm, "--checkpoint-every", "1"]
    train_here(kadid_root, out, ITERATIONS, *every, "--resume")
    assert temp_files(out) == [], "the resumed run left the killed write's temporary file"
    train_here(kadid_root, tmp_path / "straight", ITERATIONS, *every)
    assert_same_prior(out, tmp_path / "straight")


def test_killed_at_random_moments_again_and_again_then_resumed_is_exact(
    kadid_root: Path, tmp_path: Path
) -> None:
    """Three SIGKILLs at seeded random moments after training has started, each run resuming the last."""
    rng = random.Random("random kills")
    env = environment(tmp_path)
    out = tmp_path / "run"
    metrics = out / "checkpoint" / "metrics.csv"
    done = []
    for attempt in range(3):
        extra = ["--checkpoint-every", "3"] + (["--resume"] if attempt else [])
        rows_before = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
        proc = subprocess.Popen(
            command(kadid_root, out, 100_000, *extra),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > max(rows_before, 1)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never logged a row"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))  # a seeded moment: mid-step, mid-log or mid-checkpoint
        proc.kill()
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        checkpoint = out / "checkpoint" / "checkpoint.pt"
        done.append(torch.load(checkpoint, weights_only=True)["iteration"] if checkpoint.is_file() else 0)
    assert done == sorted(done), done  # a killed run never loses what an earlier one saved

    total = max(done) + 3
    fast = ["--checkpoint-every", "3"]
    train_here(kadid_root, out, total, *fast, "--resume")
    assert temp_files(out) == []
    iterations = [int(line.split(",")[0]) for line in metrics.read_text().splitlines()[1:]]
    assert iterations == list(range(1, total + 1)), "metrics.csv lost, repeated or tore a row"
    train_here(kadid_root, tmp_path / "straight", total, *fast)
    assert_same_prior(out, tmp_path / "straight")


def test_sigint_saves_a_checkpoint_exits_130_and_resume_finishes_exactly(
    kadid_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    metrics = out / "checkpoint" / "metrics.csv"
    proc = subprocess.Popen(
        command(kadid_root, out, 100_000),
        env=environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never logged a row"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "meta-train" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "SIGINT" in lines[0] and str(out / "checkpoint") in lines[0] and "--resume" in lines[0]
    done = torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)["iteration"]
    assert 1 <= done < 100_000 and not (out / "prior.pt").exists()

    train_here(kadid_root, out, done + 2, "--checkpoint-every", "25", "--resume")
    train_here(kadid_root, tmp_path / "straight", done + 2, "--checkpoint-every", "25")
    assert_same_prior(out, tmp_path / "straight")
