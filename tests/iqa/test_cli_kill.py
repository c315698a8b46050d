"""`iqa train` killed with SIGKILL (inside a seeded one of its file writes, or at a seeded moment), then
`--resume`d: the prior equals an uninterrupted run's bit for bit, for every algorithm, the metrics hold each
iteration once, and the killed writes' temporary files are gone. (SIGINT/SIGTERM: `test_cli_interrupt.py`.)

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

from metalearn.algorithms import ALGORITHMS
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


def kill_inside_a_write(root: Path, out: Path, algorithm: str, env: dict[str, str]) -> int:
    """Run `iqa train` in a subprocess that SIGKILLs itself inside a seeded one of its durable writes: the
    periodic checkpoints' (three files each), the final checkpoint's, `prior.pt`'s or `prior.json`'s."""
    nth = random.Random(f"kill {algorithm}").randint(1, (ITERATIONS + 1) * WRITES_PER_CHECKPOINT + 2)
    args = command(root, out, ITERATIONS, "--algorithm", algorithm, "--checkpoint-every", "1")[3:]
    killed = subprocess.run(
        [sys.executable, str(KILL_IN_WRITE), str(nth), *args], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, (nth, killed.stderr)
    assert temp_files(out), "the kill inside a write left no temporary file"
    return ITERATIONS


def kill_at_a_random_moment(root: Path, out: Path, algorithm: str, env: dict[str, str]) -> int:
    """Run `iqa train` in a subprocess and SIGKILL it at a seeded moment after its first logged row: mid
    step, mid log row or mid checkpoint. Returns a budget a little past the checkpoint it left."""
    metrics = out / "checkpoint" / "metrics.csv"
    proc = subprocess.Popen(
        command(root, out, 100_000, "--algorithm", algorithm, "--checkpoint-every", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never logged a row"
        time.sleep(0.01)
    time.sleep(random.Random(f"moment {algorithm}").uniform(0.0, 0.5))
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    checkpoint = out / "checkpoint" / "checkpoint.pt"
    done = torch.load(checkpoint, weights_only=True)["iteration"] if checkpoint.is_file() else 0
    return done + 3


KILLS = {
    "metaiqa": kill_inside_a_write,
    "maml": kill_at_a_random_moment,
    "fomaml": kill_inside_a_write,
    "reptile": kill_at_a_random_moment,
    "baseline": kill_inside_a_write,
    "pooled-baseline": kill_at_a_random_moment,
}


@pytest.mark.parametrize("algorithm", KILLS)
def test_killed_then_resumed_is_exact(algorithm: str, kadid_root: Path, tmp_path: Path) -> None:
    """SIGKILL inside a write or at a random moment (half the algorithms each), then `--resume`: the prior
    equals a straight run's bit for bit, the metrics hold each iteration once, no temporary file is left."""
    out = tmp_path / "run"
    total = KILLS[algorithm](kadid_root, out, algorithm, environment(tmp_path))
    assert not (out / "prior.json").exists() or (out / "prior.pt").exists()

    every = ["--algorithm", algorithm, "--checkpoint-every", "2"]
    train_here(kadid_root, out, total, *every, "--resume")
    assert temp_files(out) == [], "the resumed run left a killed write's temporary file"
    logged = (out / "checkpoint" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in logged] == list(range(1, total + 1)), (
        "metrics lost or tore a row"
    )
    train_here(kadid_root, tmp_path / "straight", total, *every)
    assert_same_prior(out, tmp_path / "straight")


assert set(KILLS) <= set(ALGORITHMS)  # the IQA algorithms (learn2learn's are covered elsewhere)
