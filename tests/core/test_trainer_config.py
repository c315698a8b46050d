"""`TrainerConfig` refuses what no run can honour when it is built; `MetaTrainer` works on its own copy of the
config (the caller's object is never changed) and refuses a budget that is not a whole number."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from metalearn import MetaTrainer, TrainerConfig
from metalearn.examples.sinusoid import SinusoidSampler, sinusoid_mlp


def test_trainer_does_not_mutate_the_callers_config() -> None:
    config = TrainerConfig(tasks_per_batch=5, progress=False)
    before = dataclasses.asdict(config)
    trainer = MetaTrainer(
        nn.Linear(1, 1), "reptile", SinusoidSampler(2, 2), tasks_per_batch=2, device="cpu", config=config
    )
    trainer.config.progress = True
    trainer.fit(1)
    assert dataclasses.asdict(config) == before
    assert trainer.config.tasks_per_batch == 2 and trainer.config is not config


@pytest.mark.parametrize(
    "settings, error, words",
    [
        ({"tasks_per_batch": 0}, ValueError, "tasks_per_batch"),
        ({"tasks_per_batch": True}, TypeError, "tasks_per_batch"),
        ({"tasks_per_batch": 2.5}, TypeError, "tasks_per_batch"),
        ({"outer_lr": float("nan")}, ValueError, "outer_lr"),
        ({"outer_lr": float("inf")}, ValueError, "outer_lr"),
        ({"outer_lr": -1.0}, ValueError, "outer_lr"),
        ({"outer_lr": 0.0}, ValueError, "outer_lr"),
        ({"outer_lr": "0.1"}, TypeError, "outer_lr"),
        ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
        ({"lr_decay": 0.0}, ValueError, "lr_decay"),
        ({"lr_decay": 1.5}, ValueError, "lr_decay"),
        ({"grad_clip": 0.0}, ValueError, "grad_clip"),
        ({"grad_clip": float("nan")}, ValueError, "grad_clip"),
        ({"seed": -1}, ValueError, "seed"),
        ({"amp": "yes"}, TypeError, "amp"),
        ({"outer_optimizer": "rmsprop"}, ValueError, "outer_optimizer"),
    ],
)
def test_a_setting_no_run_can_honour_is_refused_when_built(settings, error, words) -> None:
    with pytest.raises(error, match=words):
        TrainerConfig(**settings)


@pytest.mark.parametrize(
    "iterations, error", [(2.5, TypeError), (True, TypeError), ("3", TypeError), (-1, ValueError)]
)
def test_fit_refuses_a_budget_that_is_not_a_whole_number(iterations, error) -> None:
    trainer = MetaTrainer(
        sinusoid_mlp(hidden=4),
        "maml",
        SinusoidSampler(shots=2),
        device="cpu",
        config=TrainerConfig(tasks_per_batch=1, progress=False),
    )
    with pytest.raises(error, match="iterations"):
        trainer.fit(iterations)
    assert trainer.iteration == 0
