"""Two gloo processes splitting a meta-batch must reach the same weights as one process doing all of it;
rank 0 alone touches the run folder and the other rank shares its outcome, errors included."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MAML
from metalearn.distributed import Launch, local_main_first, on_main, process_group
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp
from metalearn.runs import RunExistsError, RunLockedError, claim_run_dir, lock_run_dir


def _train(iterations: int = 3) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    model = sinusoid_mlp(hidden=8, seed=0)
    trainer = MetaTrainer(
        model,
        algorithm=MAML(inner_lr=0.05, inner_steps=1),
        sampler=SinusoidSampler(shots=5, query_shots=5),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=4, outer_lr=0.01, seed=3, progress=False),
    )
    trainer.fit(iterations)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _joined(rank: int, world: int, init_file: str) -> contextlib.AbstractContextManager[None]:
    """The library's own process group, as users join it, over a rendezvous file of this test's alone."""
    launch = Launch(rank=rank, world_size=world, local_rank=rank, local_world_size=world)
    return process_group(launch, torch.device("cpu"), init_method=f"file://{init_file}")


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    with _joined(rank, world, init_file):
        state = _train()
        if rank == 0:
            torch.save(state, out)


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "two.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    one = _train()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    assert not torch.equal(one["0.weight"], sinusoid_mlp(hidden=8, seed=0).state_dict()["0.weight"])


def _shared_file_work(rank: int, folder: str) -> dict[str, object]:
    """What this rank got from rank 0's run-folder operations (the test process holds `folder`'s lock)."""
    seen: dict[str, object] = {}
    calls: list[int] = []

    def record() -> int:
        calls.append(rank)
        return 42

    seen["value"] = on_main(record)
    seen["called"] = calls
    os.environ["LOCAL_RANK"] = str(rank)
    cache = Path(folder).parent / "cache"
    with local_main_first():  # rank 0 fills the cache before rank 1 looks
        if rank == 0:
            time.sleep(0.5)
            cache.write_text("filled")
        seen["cache"] = cache.read_text() if cache.exists() else None
    try:
        with lock_run_dir(folder):
            seen["locked"] = "no error"
    except RunLockedError as exc:
        seen["locked"] = (type(exc).__name__, str(exc), str(exc.path))
    try:
        claim_run_dir(folder, ("checkpoint.pt",), resume=False, overwrite=False)
    except RunExistsError as exc:
        seen["claimed"] = (type(exc).__name__, exc.entries, exc.foreign)
    return seen


def _dropout_trainer() -> MetaTrainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1)
    )
    return MetaTrainer(
        model,
        algorithm=MAML(inner_lr=0.05, inner_steps=1, first_order=True),
        sampler=SinusoidSampler(shots=5, query_shots=5),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=3, outer_lr=0.01, seed=3, progress=False),
    )


def _resume(folder: str) -> list[dict[str, torch.Tensor]]:
    """Weights after 4 iterations straight, and after 2, a checkpoint, and a resume to 4."""
    straight = _dropout_trainer()
    straight.fit(4)
    _dropout_trainer().fit(2, checkpoint_dir=folder)
    resumed = _dropout_trainer()
    resumed.fit(4, checkpoint_dir=folder, resume=True)
    return [straight.model.state_dict(), resumed.model.state_dict()]


def _two_rank_worker(rank: int, world: int, tmp: str) -> None:
    with _joined(rank, world, f"{tmp}/init"):
        seen = _shared_file_work(rank, f"{tmp}/locked")
        seen["weights"] = _resume(f"{tmp}/resumed")
    torch.save(seen, f"{tmp}/seen.{rank}")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """One spawn of 2 gloo ranks for the tests below (starting processes is what costs)."""
    tmp = tmp_path_factory.mktemp("ranks")
    locked = tmp / "locked"
    locked.mkdir()
    (locked / "checkpoint.pt").write_bytes(b"a previous run")
    with lock_run_dir(locked):
        mp.spawn(_two_rank_worker, args=(2, str(tmp)), nprocs=2, join=True)
    return tmp, [torch.load(tmp / f"seen.{r}", weights_only=False) for r in (0, 1)]


def test_rank_zero_does_the_run_folder_work_and_every_rank_shares_its_errors(two_ranks):
    tmp, (rank0, rank1) = two_ranks
    assert rank0["value"] == rank1["value"] == 42
    assert rank0["called"] == [0] and rank1["called"] == []  # only rank 0 ran it
    assert rank0["cache"] == rank1["cache"] == "filled"
    assert rank0["locked"] == rank1["locked"]
    assert rank0["locked"][0] == "RunLockedError" and rank0["locked"][2] == str(tmp / "locked")
    assert rank0["claimed"] == rank1["claimed"] == ("RunExistsError", ["checkpoint.pt"], False)


def test_two_ranks_resume_exactly_with_dropout(two_ranks):
    """Each rank draws dropout from its own stream, and the checkpoint holds every rank's: resumed equals
    uninterrupted on both ranks."""
    tmp, seen = two_ranks
    for rank in (0, 1):
        straight, resumed = seen[rank]["weights"]
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), (rank, name)
    saved = torch.load(tmp / "resumed" / "checkpoint.pt", weights_only=True)
    assert len(saved["rng_ranks"]) == 2
    assert not torch.equal(saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"])


def _leaving_worker(rank: int, world: int, tmp: str) -> None:
    """Rank 1 fails inside the group; each rank records how it left (it must leave, not hang)."""
    launch = Launch(rank=rank, world_size=world, local_rank=rank, local_world_size=world)
    outcome = "left cleanly"
    try:
        with process_group(
            launch, torch.device("cpu"), timeout=timedelta(seconds=60), init_method=f"file://{tmp}/init"
        ):
            on_main(lambda: None)  # one collective together first
            if rank == 1:
                raise ValueError("rank 1 failed")
    except Exception as exc:  # noqa: BLE001 - recorded for the test to read
        outcome = f"{type(exc).__name__}: {exc}".splitlines()[0]
    Path(tmp, f"outcome.{rank}").write_text(outcome)


def test_a_failing_rank_leaves_at_once_and_its_peer_is_told(tmp_path):
    """The failing rank leaves without waiting; the rank that finished does not report success as if all
    ranks had (its closing barrier fails because its peer is gone), and neither hangs."""
    mp.spawn(_leaving_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "outcome.1").read_text() == "ValueError: rank 1 failed"
    assert (tmp_path / "outcome.0").read_text() != "left cleanly"
