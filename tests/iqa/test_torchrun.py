"""`torchrun -m metalearn iqa train` on 2 CPU processes (gloo): the prior one process trains, rank 0 alone
writing; SIGTERM stops both ranks at the same iteration with rank 0's checkpoint, which resumes to where an
uninterrupted run ends. (Two ranks resuming a checkpoint: tests/core/test_distributed.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from tests.iqa.test_cli import run

# Plain gradient descent outside (a rank that double-counted its tasks would double the step, which Adam
# would hide), 3 tasks over 2 ranks (uneven shares: rank 0 takes tasks 1 and 3, rank 1 task 2).
FAST = [
    "--dataset", "kadid10k", "--train-crop", "32", "--batch-size", "2", "--inner-steps", "1",
    "--tasks-per-batch", "3", "--outer-optimizer", "sgd", "--outer-lr", "0.05", "--device", "cpu",
    "--backbone", "small", "--width", "4",
]  # fmt: skip
ITERATIONS = 4


def torchrun(root: Path, out: Path, iterations: int, *extra: str, fast: list[str] = FAST) -> list[str]:
    """Two ranks on this machine; `--standalone` lets the rendezvous pick a free port."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "metalearn", "iqa", "train", *fast, "--root", str(root), "--iterations", str(iterations),
        "--out", str(out), *extra,
    ]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {
        "OMP_NUM_THREADS": "1",
        "METALEARN_OUTPUT": str(tmp_path / "outputs"),
        "METALEARN_DATA": str(tmp_path / "data"),
        "METALEARN_DIST_TIMEOUT": "120",  # a broken rank fails the test instead of hanging it
    }


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "prior.pt", weights_only=True)["state_dict"]


def metric_rows(folder: Path) -> list[str]:
    return (folder / "checkpoint" / "metrics.csv").read_text().splitlines()[1:]


def assert_same_prior(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def initial_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # the initialisation `make_trainer` draws (seed 0)
    return build_model(ModelConfig(backbone="small", width=4, pretrained="none")).state_dict()


@pytest.fixture(scope="module")
def one_process(kadid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same command in one process, in this one."""
    out = tmp_path_factory.mktemp("one") / "run"
    result = run(
        "iqa", "train", *FAST, "--root", str(kadid_root), "--iterations", str(ITERATIONS), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    return out


def test_two_ranks_train_the_prior_one_process_trains(
    kadid_root: Path, one_process: Path, tmp_path: Path
) -> None:
    out = tmp_path / "two"
    init = initial_weights()
    done = subprocess.run(
        torchrun(kadid_root, out, ITERATIONS), env=environment(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    want = weights(one_process)
    assert_same_prior(weights(out), want)
    moved = max((want[k] - init[k]).abs().max().item() for k in want if want[k].is_floating_point())
    assert moved > 1e-3, "training did not move the weights: the comparison would prove nothing"
    # rank 0 alone logs and prints: one row per iteration, one report line
    assert len(metric_rows(out)) == ITERATIONS
    losses = [float(row.split(",")[1]) for row in metric_rows(out)]
    assert losses == pytest.approx([float(row.split(",")[1]) for row in metric_rows(one_process)], rel=1e-5)
    assert done.stdout.count("prior written to") == 1, done.stdout


def test_sigterm_stops_both_ranks_at_one_iteration(kadid_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        torchrun(kadid_root, out, 100_000),
        env=environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "checkpoint" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never logged a row"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the launcher, as a scheduler would: it passes it to both ranks
    _, stderr = proc.communicate(timeout=120)
    stops = re.findall(r"interrupted by SIGTERM; checkpoint at iteration (\d+) saved in (\S+);", stderr)
    assert len(stops) == 2, stderr  # each rank says where it stopped ...
    assert stops[0] == stops[1], stops  # ... at the same iteration, pointing at rank 0's checkpoint
    iteration = int(stops[0][0])
    assert stops[0][1] == str(out / "checkpoint")
    saved = torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)
    assert saved["iteration"] == iteration and len(metric_rows(out)) == iteration
    assert not (out / "prior.pt").exists()
    # the 2-rank checkpoint resumes (here in one process) to where one process gets uninterrupted
    total = str(iteration + 2)
    resumed = run(
        "iqa", "train", *FAST, "--root", str(kadid_root), "--iterations", total, "--out", str(out), "--resume"
    )
    assert resumed.exit_code == 0, resumed.output
    straight = tmp_path / "straight"
    result = run(
        "iqa", "train", *FAST, "--root", str(kadid_root), "--iterations", total, "--out", str(straight)
    )
    assert result.exit_code == 0, result.output
    assert_same_prior(weights(out), weights(straight))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL runs one rank per GPU: needs 2 GPUs")
def test_two_gpus_train_the_prior_one_gpu_trains(kadid_root: Path, tmp_path: Path) -> None:
    """NCCL, a GPU per rank; bf16 autocast rounds differently by split, so the priors agree to a few
    percent of what training changed, not to float32 rounding."""
    on_gpu = [("cuda" if arg == "cpu" else arg) for arg in FAST]
    one = tmp_path / "one"
    result = run(
        "iqa", "train", *on_gpu, "--root", str(kadid_root), "--iterations", str(ITERATIONS), "--out", str(one)
    )
    assert result.exit_code == 0, result.output
    two = tmp_path / "two"
    done = subprocess.run(
        torchrun(kadid_root, two, ITERATIONS, fast=on_gpu),
        env=environment(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    init, want, got = initial_weights(), weights(one), weights(two)
    floats = [k for k in want if want[k].is_floating_point()]
    moved = max((want[k] - init[k]).abs().max().item() for k in floats)
    differ = max((got[k] - want[k]).abs().max().item() for k in floats)
    assert moved > 1e-3 and differ <= 0.05 * moved, (differ, moved)
