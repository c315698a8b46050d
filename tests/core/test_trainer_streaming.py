"""The trainer sums each task's result as it arrives: one task's meta-gradient alive at a time, inside the
autocast context, with a non-finite task still named."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from metalearn import DivergedError, MetaTrainer, TrainerConfig
from metalearn.algorithms.base import LossFn, MetaAlgorithm, MetaResult
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.task import Task, TaskData


@dataclass(eq=False)
class Probe(MetaAlgorithm):
    """Returns fresh gradient tensors and records, as each task starts, how many earlier ones are alive."""

    nan_task: int = -1

    def __post_init__(self) -> None:
        self.returned: list[weakref.ref] = []
        self.alive_at_start: list[int] = []
        self.inside: list[bool] = []
        self.in_autocast = False  # set by the test's stand-in for the trainer's autocast context
        self.calls = 0

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        self.alive_at_start.append(sum(ref() is not None for ref in self.returned))
        self.inside.append(self.in_autocast)
        gradient = {name: torch.full_like(p, 1.0 + self.calls) for name, p in model.named_parameters()}
        if self.calls == self.nan_task:
            next(iter(gradient.values()))[0] = float("nan")
        self.calls += 1
        self.returned.extend(weakref.ref(g) for g in gradient.values())
        return MetaResult(gradient=gradient, loss=0.5)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        return model


def make(probe: Probe, tasks: int = 4) -> MetaTrainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    config = TrainerConfig(tasks_per_batch=tasks, outer_optimizer="sgd", outer_lr=1.0, progress=False)
    return MetaTrainer(model, probe, SinusoidSampler(2, 2), device="cpu", config=config)


def test_one_task_result_alive_at_a_time_and_the_mean_is_exact() -> None:
    probe = Probe()
    trainer = make(probe)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.step()
    assert probe.alive_at_start == [0, 0, 0, 0]  # a list of results would show 0, 1, 2, 3
    # SGD at rate 1 on the mean of 1, 2, 3, 4: every weight moved by exactly 2.5
    for old, new in zip(before, trainer.model.parameters()):
        torch.testing.assert_close(old - new.detach(), torch.full_like(old, 2.5), rtol=0, atol=1e-6)


def test_tasks_run_inside_the_trainers_autocast_context(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe()
    trainer = make(probe, tasks=2)

    @contextlib.contextmanager
    def flagged() -> Iterator[None]:
        probe.in_autocast = True
        try:
            yield
        finally:
            probe.in_autocast = False

    monkeypatch.setattr(trainer, "_autocast", flagged)
    trainer.step()
    assert probe.inside == [True, True]


def test_a_non_finite_meta_gradient_names_its_task() -> None:
    trainer = make(Probe(nan_task=2))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(DivergedError, match=r"iteration 1, task 3 of 4: non-finite meta-gradient"):
        trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
