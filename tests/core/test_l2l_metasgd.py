"""learn2learn's Meta-SGD inside MetaTrainer: its learned rates train, are checkpointed and resume exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn import MetaTrainer, TrainerConfig
from metalearn.examples.sinusoid import SinusoidSampler
from tests.helpers import one_batch

pytest.importorskip("learn2learn")

from metalearn.algorithms.l2l import L2LMetaSGD  # noqa: E402

LR = 0.05


def make_trainer() -> MetaTrainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1))
    return MetaTrainer(
        model,
        L2LMetaSGD(inner_lr=LR, inner_steps=1),
        SinusoidSampler(shots=4, query_shots=4),
        device="cpu",
        config=TrainerConfig(
            tasks_per_batch=2, outer_lr=0.01, seed=5, progress=False, lr_decay=0.5, lr_decay_every=2
        ),
    )


def rates(trainer: MetaTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.algorithm.extra_parameters().values()]


def test_metasgd_learns_its_rates() -> None:
    trainer = make_trainer()
    assert trainer.optimizer is None  # built lazily, once the rates exist
    trainer.fit(3)
    lrs = rates(trainer)
    assert len(lrs) == len(list(trainer.model.parameters()))
    assert all(r.shape == p.shape for r, p in zip(lrs, trainer.model.parameters()))
    assert any(not torch.allclose(r, torch.full_like(r, LR)) for r in lrs)
    # the outer optimizer steps the rates too
    assert trainer.optimizer is not None
    opt_params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in opt_params for p in trainer.algorithm.extra_parameters().values())


def test_metasgd_meta_gradient_includes_rate_gradients() -> None:
    trainer = make_trainer()
    (task,) = trainer.sampler.sample(1, torch.Generator().manual_seed(0))
    grad = trainer.algorithm.meta_gradient(trainer.model, task, trainer.loss_fn)
    rate_keys = [k for k in grad if k.startswith("algorithm.lrs.")]
    assert len(rate_keys) == len(list(trainer.model.parameters()))
    assert any(grad[k].abs().sum() > 0 for k in rate_keys)


def test_metasgd_checkpoint_and_resume(tmp_path) -> None:
    straight = make_trainer()
    straight.fit(4)

    first = make_trainer()
    first.fit(2, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for name, value in first.algorithm.state_dict().items():
        assert isinstance(value, torch.Tensor) and torch.equal(saved["algorithm"][name], value)

    resumed = make_trainer()
    resumed.fit(2, checkpoint_dir=tmp_path, resume=True)  # nothing left to train: state restored only
    for a, b in zip(rates(resumed), rates(first)):
        assert torch.equal(a, b)

    resumed.fit(4, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(rates(resumed), rates(straight)):
        assert torch.equal(a, b)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)


def test_metasgd_adapt_uses_learned_rates() -> None:
    trainer = make_trainer()
    trainer.fit(2)
    (task,) = trainer.sampler.sample(1, torch.Generator().manual_seed(1))
    adapted = trainer.adapt(task.support, steps=1)
    xs, ys = one_batch(task.support)
    params = list(trainer.model.parameters())
    grads = torch.autograd.grad(trainer.loss_fn(trainer.model(xs), ys), params)
    for a, p, g, lr in zip(adapted.parameters(), params, grads, rates(trainer)):
        torch.testing.assert_close(a.detach(), p.detach() - lr * g)
