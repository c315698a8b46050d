"""MetaTrainer: exact resume, checkpoint formats, the meta-batch mean, BatchNorm statistics, metrics, sampling."""

from __future__ import annotations

import copy
import csv
import json
from typing import Any, Literal

import pytest
import torch
from torch import nn

from metalearn import FactoryTaskSampler, MetaIQA, MetaTrainer, Task, TrainerConfig, mse_loss
from metalearn.algorithms import MAML, Reptile
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.task import Batch, TaskData

SEED = 3


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))


def plain_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def algorithm(name: str):
    if name == "metaiqa":
        return MetaIQA(inner_lr=0.01, inner_steps=2)
    if name == "metaiqa-persistent":
        return MetaIQA(inner_lr=0.01, inner_steps=2, reset_inner_state=False, signal="displacement")
    if name == "maml":
        return MAML(inner_lr=0.05, inner_steps=2)
    if name == "reptile":
        return Reptile(inner_lr=0.05, inner_steps=3)
    raise AssertionError(name)


def config(**kw: Any) -> TrainerConfig:
    base: dict[str, Any] = dict(
        tasks_per_batch=2, outer_lr=0.01, seed=SEED, progress=False, lr_decay=0.5, lr_decay_every=2
    )
    base.update(kw)
    return TrainerConfig(**base)


def trainer(name: str, model: nn.Module | None = None, **kw: Any) -> MetaTrainer:
    return MetaTrainer(
        model if model is not None else bn_model(),
        algorithm(name),
        SinusoidSampler(shots=5, query_shots=5),
        device="cpu",
        config=config(**kw),
    )


@pytest.mark.parametrize("name", ["metaiqa", "metaiqa-persistent", "maml"])
def test_resume_gives_identical_weights(name: str, tmp_path) -> None:
    straight = trainer(name)
    straight.fit(6)

    first = trainer(name)
    first.fit(3, checkpoint_dir=tmp_path)
    assert first.iteration == 3
    del first
    resumed = trainer(name)  # new model, algorithm and trainer instances
    rows = resumed.fit(6, checkpoint_dir=tmp_path, resume=True)
    assert [r["iteration"] for r in rows] == [4, 5, 6]
    assert resumed.optimizer is not None
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)

    expected = straight.model.state_dict()
    got = resumed.model.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    # and the run really trained (weights and BN statistics moved)
    initial = bn_model().state_dict()
    assert not torch.equal(got["0.weight"], initial["0.weight"])
    assert not torch.equal(got["1.running_mean"], initial["1.running_mean"])


def test_resume_without_checkpoint_starts_fresh(tmp_path) -> None:
    t = trainer("reptile")
    rows = t.fit(2, checkpoint_dir=tmp_path / "empty", resume=True)
    assert len(rows) == 2 and t.iteration == 2


def test_checkpoint_files_are_weights_only_and_json(tmp_path) -> None:
    t = trainer("metaiqa-persistent")
    t.fit(2, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2
    assert set(state) >= {"model", "optimizer", "scheduler", "generator", "algorithm"}
    assert "inner_optimizer" in state["algorithm"]  # the persistent inner Adam is part of the state
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, value in t.model.state_dict().items():
        assert torch.equal(weights[key], value)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["iteration"] == 2
    assert cfg["algorithm"]["name"] == "metaiqa"
    assert cfg["algorithm"]["reset_inner_state"] is False
    assert cfg["trainer"]["tasks_per_batch"] == 2
    assert cfg["model_class"] == "Sequential"


def test_checkpoint_every_writes_intermediate_checkpoints(tmp_path) -> None:
    seen = []
    t = trainer("reptile", checkpoint_every=2)
    t.fit(3, checkpoint_dir=tmp_path, callback=lambda row: seen.append(row["iteration"]))
    assert seen == [1, 2, 3]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 3


@pytest.mark.parametrize("name", ["metaiqa", "maml", "reptile"])
def test_one_step_moves_weights_by_mean_meta_gradient(name: str) -> None:
    tasks_per_batch = 3
    model = plain_model()
    theta = copy.deepcopy(model)
    t = MetaTrainer(
        model,
        algorithm(name),
        SinusoidSampler(shots=4, query_shots=4),
        outer_optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=tasks_per_batch, seed=SEED, progress=False),
    )
    t.step()

    tasks = SinusoidSampler(shots=4, query_shots=4).sample(
        tasks_per_batch, torch.Generator().manual_seed(SEED)
    )
    oracle = algorithm(name)
    grads = [oracle.meta_gradient(theta, task, mse_loss) for task in tasks]
    for name_, p in theta.named_parameters():
        mean = torch.stack([g[name_] for g in grads]).mean(0)
        torch.testing.assert_close(dict(model.named_parameters())[name_].detach(), p.detach() - mean)
        # the step is not degenerate
        assert mean.abs().max() > 1e-5


def test_single_task_batch_step_is_exact() -> None:
    model = plain_model()
    theta = copy.deepcopy(model)
    t = MetaTrainer(
        model,
        "fomaml",
        SinusoidSampler(shots=4, query_shots=4),
        outer_optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=1, seed=SEED, progress=False),
    )
    t.step()
    (task,) = SinusoidSampler(shots=4, query_shots=4).sample(1, torch.Generator().manual_seed(SEED))
    grad = t.algorithm.meta_gradient(theta, task, mse_loss)
    for name, p in theta.named_parameters():
        assert torch.equal(dict(model.named_parameters())[name].detach(), p.detach() - 0.5 * grad[name])


@pytest.mark.parametrize("mode", ["average", "keep"])
def test_bn_stats(mode: Literal["average", "keep"]) -> None:
    model = bn_model()
    before = copy.deepcopy(model)
    t = MetaTrainer(
        model,
        algorithm("metaiqa"),
        SinusoidSampler(shots=5, query_shots=5),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=3, seed=SEED, progress=False, bn_stats=mode),
    )
    t.step()
    tasks = SinusoidSampler(shots=5, query_shots=5).sample(3, torch.Generator().manual_seed(SEED))
    oracle = algorithm("metaiqa")
    buffers = [oracle.meta_step(before, task, mse_loss).buffers for task in tasks]
    after = model.state_dict()
    for key in ("1.running_mean", "1.running_var"):
        if mode == "average":
            torch.testing.assert_close(after[key], torch.stack([b[key] for b in buffers]).mean(0))
            assert not torch.equal(after[key], before.state_dict()[key])
        else:
            assert torch.equal(after[key], before.state_dict()[key])
    # the integer counter is never averaged
    assert torch.equal(after["1.num_batches_tracked"], before.state_dict()["1.num_batches_tracked"])


def test_metrics_csv_rows_and_resume_truncation(tmp_path) -> None:
    t = trainer("reptile")
    rows = t.fit(3, checkpoint_dir=tmp_path)
    with (tmp_path / "metrics.csv").open(newline="") as fh:
        logged = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in logged] == [1, 2, 3]
    assert {"iteration", "loss", "lr", "tasks_per_s", "seconds"} <= set(logged[0])
    for row, line in zip(rows, logged):
        assert float(line["loss"]) == pytest.approx(row["loss"])
        assert float(line["lr"]) == pytest.approx(row["lr"])

    # resume from an older checkpoint: rows after it are dropped and re-logged once
    t2 = trainer("reptile")
    t2.fit(1, checkpoint_dir=tmp_path / "early")
    (tmp_path / "early" / "metrics.csv").write_text((tmp_path / "metrics.csv").read_text())
    t3 = trainer("reptile")
    t3.fit(4, checkpoint_dir=tmp_path / "early", resume=True)
    with (tmp_path / "early" / "metrics.csv").open(newline="") as fh:
        assert [int(r["iteration"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]


def test_sampler_determinism() -> None:
    sampler = SinusoidSampler(shots=3, query_shots=2)
    a = sampler.sample(4, torch.Generator().manual_seed(7))
    b = sampler.sample(4, torch.Generator().manual_seed(7))
    c = sampler.sample(4, torch.Generator().manual_seed(8))
    for x, y in zip(a, b):
        assert torch.equal(batch(x.support)[0], batch(y.support)[0])
        assert torch.equal(batch(x.query)[1], batch(y.query)[1])
    assert not torch.equal(batch(a[0].support)[0], batch(c[0].support)[0])
    assert batch(a[0].support)[0].shape == (3, 1) and batch(a[0].query)[0].shape == (2, 1)


def test_factory_sampler_without_replacement_and_determinism() -> None:
    def factory(i: int):
        return lambda g: Task(
            support=(torch.full((1, 1), float(i)), torch.zeros(1, 1)),
            query=(torch.ones(1, 1), torch.ones(1, 1)),
            name=str(i),
        )

    sampler = FactoryTaskSampler([factory(i) for i in range(5)])
    picks = [t.name for t in sampler.sample(5, torch.Generator().manual_seed(0))]
    assert sorted(picks) == ["0", "1", "2", "3", "4"]  # a permutation: no repeats while n allows
    again = [t.name for t in sampler.sample(5, torch.Generator().manual_seed(0))]
    assert picks == again
    assert len(sampler.sample(7, torch.Generator().manual_seed(0))) == 7


def test_trainer_generator_is_seeded() -> None:
    a, b = trainer("reptile"), trainer("reptile")
    a.fit(2)
    b.fit(2)
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)
    c = trainer("reptile", seed=SEED + 1)
    c.fit(2)
    assert not torch.equal(next(c.model.parameters()), next(a.model.parameters()))


def batch(data: TaskData) -> Batch:
    """A sinusoid task's set: one (inputs, targets) batch."""
    assert isinstance(data, tuple)
    return data


def double(data: Batch) -> Batch:
    return data[0].double(), data[1].double()


class DoubleSinusoid(SinusoidSampler):
    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        return [
            Task(support=double(batch(t.support)), query=double(batch(t.query)))
            for t in super().sample(n, generator)
        ]


def test_float64_meta_batch_mean_keeps_double_precision() -> None:
    model = plain_model().double()
    theta = copy.deepcopy(model)
    t = MetaTrainer(
        model,
        MAML(inner_lr=0.05),
        DoubleSinusoid(shots=4, query_shots=4),
        outer_optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=3, seed=SEED, progress=False),
    )
    t.step()
    tasks = DoubleSinusoid(shots=4, query_shots=4).sample(3, torch.Generator().manual_seed(SEED))
    grads = [MAML(inner_lr=0.05).meta_gradient(theta, task, mse_loss) for task in tasks]
    for name, p in theta.named_parameters():
        mean = torch.stack([g[name] for g in grads]).mean(0)
        # float32 accumulation would be off by ~1e-8; float64 agrees to rounding
        torch.testing.assert_close(
            dict(model.named_parameters())[name].detach(), p.detach() - mean, rtol=1e-13, atol=1e-13
        )
