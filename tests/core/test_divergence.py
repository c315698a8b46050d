"""A diverging run stops with `DivergedError` naming the iteration; nothing non-finite is saved or resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn import MAML, DivergedError, MetaTrainer, TrainerConfig
from metalearn.checkpoint import first_nonfinite, load_state
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.task import Task
from metalearn.trainer import CHECKPOINT_FILE, MODEL_FILE
from tests.helpers import one_batch


def tiny_trainer(**kw) -> MetaTrainer:
    torch.manual_seed(0)
    config = TrainerConfig(tasks_per_batch=2, seed=1, progress=False, **kw)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    return MetaTrainer(
        model, MAML(inner_lr=0.01, inner_steps=1), SinusoidSampler(3, 3), device="cpu", config=config
    )


def test_absurd_outer_rate_stops_with_the_iteration_and_keeps_the_finite_checkpoint(tmp_path: Path) -> None:
    trainer = tiny_trainer(outer_lr=1e30, checkpoint_every=1)
    with pytest.raises(DivergedError) as caught:
        trainer.fit(10, checkpoint_dir=tmp_path)
    error = caught.value
    assert error.iteration >= 2 and error.task is not None
    message = str(error)
    assert f"iteration {error.iteration}" in message and "\n" not in message
    assert f"last finite checkpoint: iteration {error.iteration - 1}" in message
    state = load_state(tmp_path / CHECKPOINT_FILE)
    assert state["iteration"] == error.iteration - 1
    assert first_nonfinite(state["model"]) is None
    assert first_nonfinite(load_state(tmp_path / MODEL_FILE)) is None
    assert first_nonfinite(dict(trainer.model.state_dict())) is None  # the bad step was never taken


def test_non_finite_weights_after_the_step(tmp_path: Path) -> None:
    # the largest finite rate: one plain step overflows the weights (an infinite rate is refused up front)
    trainer = tiny_trainer(outer_lr=float(torch.finfo(torch.float32).max), outer_optimizer="sgd")
    with pytest.raises(DivergedError, match="iteration 1: non-finite weights in model") as caught:
        trainer.fit(3, checkpoint_dir=tmp_path)
    assert caught.value.iteration == 1 and f"no checkpoint written to {tmp_path}" in str(caught.value)
    with pytest.raises(DivergedError, match="refusing to save"):
        trainer.save_checkpoint(tmp_path)
    assert not (tmp_path / CHECKPOINT_FILE).exists() and not (tmp_path / MODEL_FILE).exists()


class NanQuerySampler(SinusoidSampler):
    """Sinusoid tasks whose second task has a NaN query target: that task's query loss is NaN."""

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks = super().sample(n, generator)
        x, y = one_batch(tasks[1].query)
        tasks[1] = Task(support=tasks[1].support, query=(x, torch.full_like(y, float("nan"))))
        return tasks


@pytest.mark.parametrize("backend", ["func", "higher"])  # func batches the two tasks with vmap
def test_nan_loss_names_the_task(backend: str) -> None:
    trainer = tiny_trainer(outer_lr=1e-3)
    trainer.algorithm = MAML(inner_lr=0.01, inner_steps=1, backend=backend)
    trainer.sampler = NanQuerySampler(3, 3)
    with pytest.raises(DivergedError, match=r"iteration 1, task 2 of 2: non-finite loss") as caught:
        trainer.step()
    assert caught.value.task == 2 and trainer.iteration == 0


def test_resuming_from_a_nan_checkpoint_names_the_file(tmp_path: Path) -> None:
    trainer = tiny_trainer(outer_lr=1e-3)
    trainer.fit(1, checkpoint_dir=tmp_path)
    state = load_state(tmp_path / CHECKPOINT_FILE)
    state["model"]["0.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: non-finite weights in model\.0\.weight"):
        tiny_trainer().fit(2, checkpoint_dir=tmp_path, resume=True)
