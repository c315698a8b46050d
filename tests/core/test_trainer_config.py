"""`MetaTrainer` works on its own copy of the config: the caller's object is never changed."""

from __future__ import annotations

import dataclasses

from torch import nn

from metalearn import MetaTrainer, TrainerConfig
from metalearn.examples.sinusoid import SinusoidSampler


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
