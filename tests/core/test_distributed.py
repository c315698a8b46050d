"""Two gloo processes splitting a meta-batch must reach the same weights as one process doing all of it;
rank 0 alone touches the run folder and the other rank shares its outcome, errors included."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MAML
from metalearn.distributed import local_main_first, on_main
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


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        state = _train()
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "two.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    one = _train()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    assert not torch.equal(one["0.weight"], sinusoid_mlp(hidden=8, seed=0).state_dict()["0.weight"])


def _run_folder_worker(rank: int, world: int, init_file: str, folder: str, out: str) -> None:
    """Each rank reports what it got from rank 0's run-folder operations."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    seen: dict[str, object] = {}
    try:
        calls: list[int] = []
        seen["value"] = on_main(lambda: calls.append(rank) or 42)
        seen["called"] = calls
        os.environ["LOCAL_RANK"] = str(rank)
        cache = Path(folder).parent / "cache"
        with local_main_first():  # rank 0 fills the cache before rank 1 looks
            if rank == 0:
                time.sleep(0.5)
                cache.write_text("filled")
            seen["cache"] = cache.read_text() if cache.exists() else None
        try:
            with lock_run_dir(folder):  # the test process holds it
                seen["locked"] = "no error"
        except RunLockedError as exc:
            seen["locked"] = (type(exc).__name__, str(exc), str(exc.path))
        try:
            claim_run_dir(folder, ("checkpoint.pt",), resume=False, overwrite=False)
        except RunExistsError as exc:
            seen["claimed"] = (type(exc).__name__, exc.entries, exc.foreign)
    finally:
        dist.destroy_process_group()
        torch.save(seen, f"{out}.{rank}")


def test_rank_zero_does_the_run_folder_work_and_every_rank_shares_its_errors(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"a previous run")
    out = tmp_path / "seen"
    with lock_run_dir(folder):
        mp.spawn(
            _run_folder_worker, args=(2, str(tmp_path / "init"), str(folder), str(out)), nprocs=2, join=True
        )
    rank0, rank1 = (torch.load(f"{out}.{r}", weights_only=False) for r in (0, 1))
    assert rank0["value"] == rank1["value"] == 42
    assert rank0["called"] == [0] and rank1["called"] == []  # only rank 0 ran it
    assert rank0["cache"] == rank1["cache"] == "filled"
    assert rank0["locked"] == rank1["locked"]
    assert rank0["locked"][0] == "RunLockedError" and rank0["locked"][2] == str(folder)
    assert rank0["claimed"] == rank1["claimed"] == ("RunExistsError", ["checkpoint.pt"], False)


def _dropout_trainer(checkpointing: bool = False) -> MetaTrainer:
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


def _resume_worker(rank: int, world: int, init_file: str, folder: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        straight = _dropout_trainer()
        straight.fit(4)
        _dropout_trainer().fit(2, checkpoint_dir=folder)
        resumed = _dropout_trainer()
        resumed.fit(4, checkpoint_dir=folder, resume=True)
        torch.save([straight.model.state_dict(), resumed.model.state_dict()], f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_ranks_resume_exactly_with_dropout(tmp_path):
    """Each rank draws dropout from its own stream, and the checkpoint holds every rank's: resumed equals
    uninterrupted on both ranks."""
    out = tmp_path / "weights"
    args = (2, str(tmp_path / "init"), str(tmp_path / "run"), str(out))
    mp.spawn(_resume_worker, args=args, nprocs=2, join=True)
    for rank in (0, 1):
        straight, resumed = torch.load(f"{out}.{rank}", weights_only=True)
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), (rank, name)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(saved["rng_ranks"]) == 2
    assert not torch.equal(saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"])
