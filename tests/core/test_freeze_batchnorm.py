"""`TrainerConfig.freeze_batchnorm`: BatchNorm runs on its running statistics in every copy, which stay fixed."""

from __future__ import annotations

import torch
from torch import nn

from metalearn import MetaTrainer, Task, TrainerConfig
from metalearn.algorithms import MetaIQA, Plain
from metalearn.algorithms.base import ScratchCopy, freeze_batchnorm


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1), nn.Flatten(0))


def _running(model: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """The BatchNorm layer's running mean and variance (the tensors themselves, not copies)."""
    layer = model[1]
    assert isinstance(layer, nn.BatchNorm1d)
    assert layer.running_mean is not None and layer.running_var is not None
    return layer.running_mean, layer.running_var


def _first(model: nn.Sequential) -> nn.Linear:
    layer = model[0]
    assert isinstance(layer, nn.Linear)
    return layer


class _Sampler:
    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks = []
        for _ in range(n):
            x = torch.randn(6, 3, generator=generator) * 3 + 5  # far from the initial running stats
            y = torch.randn(6, generator=generator)
            tasks.append(Task(support=(x, y), query=(x, y)))
        return tasks


def test_freeze_batchnorm_sets_only_batchnorm_to_eval() -> None:
    model = _model().train()
    freeze_batchnorm(model)
    assert not model[1].training
    assert model[0].training and model[3].training


def test_scratch_copy_keeps_per_layer_modes() -> None:
    model = _model().train()
    freeze_batchnorm(model)
    copy = ScratchCopy().load(model)
    assert [m.training for m in copy.modules()] == [m.training for m in model.modules()]


def test_frozen_running_stats_stay_and_weights_still_learn() -> None:
    for algorithm in (MetaIQA(inner_lr=0.01, inner_steps=2), Plain(adapt_optimizer="adam")):
        model = _model()
        mean0, var0 = _running(model)[0].clone(), _running(model)[1].clone()
        weight0 = _first(model).weight.detach().clone()
        config = TrainerConfig(tasks_per_batch=2, outer_lr=0.01, freeze_batchnorm=True, progress=False)
        MetaTrainer(model, algorithm=algorithm, sampler=_Sampler(), device="cpu", config=config).fit(3)
        torch.testing.assert_close(_running(model)[0], mean0)
        torch.testing.assert_close(_running(model)[1], var0)
        assert not torch.equal(_first(model).weight, weight0)


def test_unfrozen_running_stats_move() -> None:
    model = _model()
    mean0 = _running(model)[0].clone()
    config = TrainerConfig(tasks_per_batch=2, outer_lr=0.01, progress=False)
    MetaTrainer(
        model,
        algorithm=MetaIQA(inner_lr=0.01, inner_steps=2),
        sampler=_Sampler(),
        device="cpu",
        config=config,
    ).fit(2)
    assert not torch.allclose(_running(model)[0], mean0)
