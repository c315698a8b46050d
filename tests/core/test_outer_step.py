"""The trainer's outer step options: plain training (`Plain`), outer SGD, and the inner rate's decay."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from metalearn import MetaIQA, MetaTrainer, Task, TrainerConfig, mse_loss
from metalearn.algorithms import Plain, Pretrain
from metalearn.examples.sinusoid import SinusoidSampler


def small_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 2, generator=g), torch.randn(5, 1, generator=g)


class Untouchable:
    """A query set that fails the test if anything reads it."""

    def __iter__(self):
        raise AssertionError("the query set was read")


class FixedTasks:
    """A sampler that hands out the same tasks every time."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        assert n == len(self.tasks)
        return self.tasks


def make_trainer(algorithm: object, tasks: list[Task], **kw: object) -> MetaTrainer:
    config = TrainerConfig(tasks_per_batch=len(tasks), outer_lr=0.05, progress=False, **kw)  # type: ignore[arg-type]
    return MetaTrainer(small_model(), algorithm, FixedTasks(tasks), mse_loss, device="cpu", config=config)  # type: ignore[arg-type]


def test_plain_iteration_is_one_adam_step_on_the_support_batch() -> None:
    data = batch(0)
    trainer = make_trainer(Plain(), [Task(support=[data], query=Untouchable(), name="pooled")])
    reference = small_model()
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.05)
    mse_loss(reference(data[0]), data[1]).backward()
    optimizer.step()
    trainer.step()
    moved = False
    for (name, p), q in zip(trainer.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=name)
        moved |= not torch.equal(p, small_model().state_dict()[name])
    assert moved


def test_outer_sgd_moves_by_minus_lr_times_the_mean_meta_gradient() -> None:
    tasks = [Task(support=[batch(1)], query=[batch(2)]), Task(support=[batch(3)], query=[batch(4)])]
    trainer = make_trainer(Pretrain(), tasks, outer_optimizer="sgd")
    reference = small_model()
    params = list(reference.parameters())
    grads = [torch.zeros_like(p) for p in params]
    for task in tasks:  # Pretrain: the loss gradient on support and query batches, averaged over them
        for inputs, targets in [*task.support, *task.query]:
            step = torch.autograd.grad(mse_loss(reference(inputs), targets) / 2, params)
            grads = [g + s / len(tasks) for g, s in zip(grads, step)]
    trainer.step()
    for p, p0, g in zip(trainer.model.parameters(), params, grads):
        torch.testing.assert_close(p, p0.detach() - 0.05 * g, rtol=0, atol=1e-7)


def test_outer_adam_is_not_sgd() -> None:
    """Guards the test above: the default outer step must differ from plain gradient descent."""
    tasks = [Task(support=[batch(1)], query=[batch(2)])]
    adam, sgd = make_trainer(Pretrain(), tasks), make_trainer(Pretrain(), tasks, outer_optimizer="sgd")
    adam.step()
    sgd.step()
    assert isinstance(sgd.optimizer, torch.optim.SGD) and sgd.optimizer.defaults["momentum"] == 0
    assert not torch.allclose(first_weight(adam.model), first_weight(sgd.model))


def first_weight(model: nn.Module) -> torch.Tensor:
    """The weight of the first layer of a `small_model`-like `nn.Sequential`."""
    assert isinstance(model, nn.Sequential) and isinstance(model[0], nn.Linear)
    return model[0].weight


def decaying_trainer(**kw: Any) -> MetaTrainer:
    config = TrainerConfig(
        tasks_per_batch=2, outer_lr=0.01, seed=3, progress=False, lr_decay=0.5, lr_decay_every=2, **kw
    )
    algorithm = MetaIQA(inner_lr=0.1, inner_steps=1, reset_inner_state=False)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    return MetaTrainer(model, algorithm, SinusoidSampler(3, 3), config=config, device="cpu")


def test_inner_rate_follows_the_outer_schedule() -> None:
    trainer = decaying_trainer(decay_inner_lr=True)
    rates = []
    for _ in range(4):
        trainer.step()
        rates.append(trainer.algorithm.inner_lr)  # type: ignore[attr-defined]
    assert rates == pytest.approx([0.1, 0.05, 0.05, 0.025])
    trainer.step()  # the kept inner Adam state takes the decayed rate too
    assert trainer.algorithm._optimizer.param_groups[0]["lr"] == pytest.approx(0.025)  # type: ignore[attr-defined]
    fixed = decaying_trainer()
    for _ in range(3):
        fixed.step()
    assert fixed.algorithm.inner_lr == 0.1  # type: ignore[attr-defined]


def test_inner_rate_is_restored_on_resume(tmp_path) -> None:
    straight = decaying_trainer(decay_inner_lr=True)
    straight.fit(4)
    first = decaying_trainer(decay_inner_lr=True)
    first.fit(3, checkpoint_dir=tmp_path)
    resumed = decaying_trainer(decay_inner_lr=True)  # a fresh algorithm at the base rate 0.1
    resumed.load_checkpoint(tmp_path)
    assert resumed.iteration == 3 and resumed.algorithm.inner_lr == pytest.approx(0.05)  # type: ignore[attr-defined]
    resumed.fit(4, checkpoint_dir=tmp_path)
    assert resumed.algorithm.inner_lr == pytest.approx(0.025)  # type: ignore[attr-defined]
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)
