"""Two gloo processes splitting a meta-batch must reach the same weights as one process doing all of it."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MAML
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp


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
