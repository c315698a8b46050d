"""The native Meta-SGD against learn2learn's MetaSGD, a torch.func re-derivation and finite differences; its
learned rates train, checkpoint and resume inside MetaTrainer."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_
from torch.nn.functional import cross_entropy

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import MetaSGD, get_algorithm
from metalearn.algorithms.metasgd import rate_key
from metalearn.task import Task
from tests.helpers import TemplateEpisodes, episode, one_batch, tiny_conv

LR = 0.2


def random_rates(algorithm: MetaSGD, model: nn.Module, seed: int = 7) -> dict[str, torch.Tensor]:
    """Rates unlike their initial value (so a rate used in the wrong place shows), set in the algorithm."""
    g = torch.Generator().manual_seed(seed)
    rates = algorithm.rates(model)
    with torch.no_grad():
        for r in rates.values():
            r.copy_(LR * (0.5 + torch.rand(r.shape, generator=g, dtype=r.dtype)))
    return {k: r.detach().clone() for k, r in rates.items()}


def func_oracle(model: nn.Module, rates: dict, task: Task, steps: int) -> tuple[dict, dict]:
    """phi = theta - rate * grad at every step, differentiated with torch.func w.r.t. theta and the rates."""
    model = copy.deepcopy(model)
    replace_all_batch_norm_modules_(model)  # batch statistics, not tracked (the train-mode forward)
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)

    def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(functional_call(model, p, (x,)), y)

    def objective(theta: dict, lrs: dict) -> torch.Tensor:
        phi = theta
        for _ in range(steps):
            g = grad(loss)(phi, xs, ys)
            phi = {k: phi[k] - lrs[k] * g[k] for k in phi}
        return loss(phi, xq, yq)

    theta = {k: p.detach() for k, p in model.named_parameters()}
    return grad(objective, argnums=(0, 1))(theta, rates)


@pytest.mark.parametrize("steps", [1, 2])
def test_metasgd_matches_a_torch_func_re_derivation(steps: int) -> None:
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, dtype=torch.float64)
    algorithm = MetaSGD(inner_lr=LR, inner_steps=steps)
    rates = random_rates(algorithm, model)
    got = algorithm.meta_gradient(model, task, cross_entropy)
    d_theta, d_rates = func_oracle(model, rates, task, steps)
    assert list(got) == [*d_theta, *(rate_key(k) for k in d_rates)]
    for name in d_theta:
        torch.testing.assert_close(got[name], d_theta[name], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got[f"algorithm.lr.{name}"], d_rates[name], rtol=1e-9, atol=1e-12)


def test_metasgd_matches_finite_differences_in_weights_and_rates() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 5)
    ).double()
    task = episode(shots=2, dtype=torch.float64)
    algorithm = MetaSGD(inner_lr=LR, inner_steps=2)
    rates = random_rates(algorithm, model)
    got = algorithm.meta_gradient(model, task, cross_entropy)
    names = [n for n, _ in model.named_parameters()]
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)

    def objective(vector: torch.Tensor) -> float:
        values, offset = [], 0
        for shape in [p.shape for p in model.parameters()] * 2:  # theta, then the rates
            values.append(vector[offset : offset + shape.numel()].view(shape))
            offset += shape.numel()
        phi = {n: v.clone().requires_grad_(True) for n, v in zip(names, values)}
        lrs = dict(zip(names, values[len(names) :]))
        for _ in range(2):
            grads = torch.autograd.grad(
                cross_entropy(functional_call(model, phi, (xs,)), ys), list(phi.values())
            )
            phi = {n: (phi[n] - lrs[n] * g).detach().requires_grad_(True) for n, g in zip(names, grads)}
        with torch.no_grad():
            return cross_entropy(functional_call(model, phi, (xq,)), yq).item()

    point = torch.cat(
        [p.detach().reshape(-1) for p in model.parameters()] + [rates[n].reshape(-1) for n in names]
    )
    h = 1e-6
    expected = torch.zeros_like(point)
    for i in range(point.numel()):
        e = torch.zeros_like(point)
        e[i] = h
        expected[i] = (objective(point + e) - objective(point - e)) / (2 * h)
    flat = torch.cat([got[n].reshape(-1) for n in names] + [got[rate_key(n)].reshape(-1) for n in names])
    torch.testing.assert_close(flat, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_metasgd_matches_learn2learn(steps: int, first_order: bool) -> None:
    pytest.importorskip("learn2learn")
    from metalearn.algorithms.l2l import import_learn2learn

    l2l = import_learn2learn()
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, dtype=torch.float64)
    algorithm = MetaSGD(inner_lr=LR, inner_steps=steps, first_order=first_order)
    rates = random_rates(algorithm, model)
    got = algorithm.meta_gradient(model, task, cross_entropy)

    reference = copy.deepcopy(model)
    wrapper = l2l.algorithms.MetaSGD(reference, lr=LR, first_order=first_order)
    with torch.no_grad():
        for lr, name in zip(wrapper.lrs, rates):
            lr.copy_(rates[name])
    learner = wrapper.clone()
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
    for _ in range(steps):
        learner.adapt(cross_entropy(learner(xs), ys))
    cross_entropy(learner(xq), yq).backward()
    for (name, p), lr in zip(reference.named_parameters(), wrapper.lrs):
        torch.testing.assert_close(got[name], p.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got[rate_key(name)], lr.grad, rtol=1e-9, atol=1e-12)


def make_trainer() -> MetaTrainer:
    return MetaTrainer(
        tiny_conv(),
        MetaSGD(inner_lr=0.1, inner_steps=1),
        TemplateEpisodes(),
        loss_fn=cross_entropy,
        device="cpu",
        config=TrainerConfig(tasks_per_batch=2, outer_lr=0.01, seed=5, progress=False),
    )


def rates_of(trainer: MetaTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.algorithm.extra_parameters().values()]


def test_the_rates_train_checkpoint_and_resume(tmp_path: Path) -> None:
    straight = make_trainer()
    assert straight.optimizer is None  # built once the rates exist
    straight.fit(4)
    params = list(straight.model.named_parameters())
    assert list(straight.algorithm.extra_parameters()) == [f"lr.{n}" for n, _ in params]
    assert any(not torch.allclose(r, torch.full_like(r, 0.1)) for r in rates_of(straight))
    assert straight.optimizer is not None
    stepped = {id(p) for group in straight.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in stepped for p in straight.algorithm.extra_parameters().values())

    first = make_trainer()
    first.fit(2, checkpoint_dir=tmp_path)
    resumed = make_trainer()
    resumed.fit(4, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(rates_of(resumed), rates_of(straight)):
        assert torch.equal(a, b)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)


def test_adapt_steps_with_the_learned_rates() -> None:
    model = tiny_conv(dtype=torch.float64).eval()
    task = episode(shots=2, dtype=torch.float64)
    algorithm = MetaSGD(inner_lr=LR)
    plain = algorithm.adapt(model, task.support, cross_entropy, steps=1)  # before the rates exist: inner_lr
    rates = random_rates(algorithm, model)
    adapted = algorithm.adapt(model, task.support, cross_entropy, steps=1)
    xs, ys = one_batch(task.support)
    grads = torch.autograd.grad(cross_entropy(model(xs), ys), list(model.parameters()))
    for (name, p), g, a, b in zip(model.named_parameters(), grads, adapted.parameters(), plain.parameters()):
        torch.testing.assert_close(a, p - rates[name] * g, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b, p - LR * g, rtol=1e-12, atol=1e-14)


def test_rates_belong_to_one_architecture() -> None:
    algorithm = get_algorithm("metasgd")
    algorithm.meta_gradient(tiny_conv(), episode(), cross_entropy)
    with pytest.raises(
        ValueError, match="^metasgd: its learned rates belong to a model with other parameters"
    ):
        algorithm.meta_gradient(tiny_conv(ways=3), episode(ways=3), cross_entropy)
    with pytest.raises(ValueError, match="unexpected entry 'lrs.0'"):
        MetaSGD().load_state_dict({"lrs.0": torch.zeros(1)})
    with pytest.raises(ValueError, match="inner_steps"):
        MetaSGD(inner_steps=0)
