"""MAML meta-gradients against independent oracles: finite differences, hand-written FOMAML, learn2learn."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metalearn.algorithms import FOMAML, MAML
from metalearn.algorithms.maml import BACKENDS
from metalearn.task import Task
from tests.helpers import one_batch

ALPHA = 0.3


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred.reshape(target.shape) - target) ** 2).mean()


def tanh_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def make_task(seed: int = 1) -> Task:
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(5, 2, generator=g, dtype=torch.float64)
    ys = torch.randn(5, 1, generator=g, dtype=torch.float64)
    xq = torch.randn(4, 2, generator=g, dtype=torch.float64)
    yq = torch.randn(4, 1, generator=g, dtype=torch.float64)
    return Task(support=(xs, ys), query=(xq, yq))


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, p in model.named_parameters():
        out[name] = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def adapted_weights(model: nn.Module, flat: torch.Tensor, task: Task, steps: int) -> dict[str, torch.Tensor]:
    """phi after `steps` plain SGD steps on the support set (no graph kept: first-order by construction)."""
    xs, ys = one_batch(task.support)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in unflatten(model, flat).items()}
    for _ in range(steps):
        loss = mse(functional_call(model, params, (xs,)), ys)
        grads = torch.autograd.grad(loss, list(params.values()))
        params = {
            k: (v - ALPHA * g).detach().requires_grad_(True) for (k, v), g in zip(params.items(), grads)
        }
    return params


def bilevel_objective(model: nn.Module, flat: torch.Tensor, task: Task, steps: int) -> float:
    """L_query(phi(theta)) with phi the SGD-adapted weights."""
    xq, yq = one_batch(task.query)
    phi = adapted_weights(model, flat, task, steps)
    with torch.no_grad():
        return mse(functional_call(model, phi, (xq,)), yq).item()


def finite_difference_gradient(model: nn.Module, task: Task, steps: int, h: float = 1e-5) -> torch.Tensor:
    theta = flat_params(model)
    grad = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        grad[i] = (
            bilevel_objective(model, theta + e, task, steps)
            - bilevel_objective(model, theta - e, task, steps)
        ) / (2 * h)
    return grad


def flat_gradient(model: nn.Module, gradient: dict[str, torch.Tensor]) -> torch.Tensor:
    assert list(gradient) == [n for n, _ in model.named_parameters()]
    return torch.cat([gradient[n].reshape(-1) for n, _ in model.named_parameters()])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps", [1, 2])
def test_maml_matches_finite_differences(steps: int, backend: str) -> None:
    model, task = tanh_mlp(), make_task()
    maml = MAML(inner_lr=ALPHA, inner_steps=steps, backend=backend)
    got = flat_gradient(model, maml.meta_gradient(model, task, mse))
    expected = finite_difference_gradient(model, task, steps)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_linear_model_matches_finite_differences(steps: int) -> None:
    torch.manual_seed(3)
    model = nn.Linear(3, 1).double()
    g = torch.Generator().manual_seed(4)
    task = Task(
        support=(
            torch.randn(6, 3, generator=g, dtype=torch.float64),
            torch.randn(6, 1, generator=g, dtype=torch.float64),
        ),
        query=(
            torch.randn(6, 3, generator=g, dtype=torch.float64),
            torch.randn(6, 1, generator=g, dtype=torch.float64),
        ),
    )
    got = flat_gradient(model, MAML(inner_lr=ALPHA, inner_steps=steps).meta_gradient(model, task, mse))
    torch.testing.assert_close(got, finite_difference_gradient(model, task, steps), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps", [1, 2])
def test_fomaml_is_query_gradient_at_adapted_weights(steps: int, backend: str) -> None:
    model, task = tanh_mlp(), make_task()
    fomaml = FOMAML(inner_lr=ALPHA, inner_steps=steps, backend=backend)
    got = flat_gradient(model, fomaml.meta_gradient(model, task, mse))
    phi = adapted_weights(model, flat_params(model), task, steps)
    xq, yq = one_batch(task.query)
    expected = torch.autograd.grad(mse(functional_call(model, phi, (xq,)), yq), list(phi.values()))
    torch.testing.assert_close(got, torch.cat([g.reshape(-1) for g in expected]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_order_differs_from_first_order_on_nonlinear_model(backend: str) -> None:
    model, task = tanh_mlp(), make_task()
    second = flat_gradient(
        model, MAML(inner_lr=ALPHA, inner_steps=1, backend=backend).meta_gradient(model, task, mse)
    )
    first = flat_gradient(
        model,
        MAML(inner_lr=ALPHA, inner_steps=1, first_order=True, backend=backend).meta_gradient(
            model, task, mse
        ),
    )
    # a silently first-order MAML would make these equal; the Hessian term here is sizeable
    assert (second - first).norm() > 1e-3 * second.norm()
    assert (second - first).norm() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_matches_learn2learn(steps: int, first_order: bool, backend: str) -> None:
    pytest.importorskip("learn2learn")
    from metalearn.algorithms.l2l import L2LMAML, import_learn2learn

    l2l = import_learn2learn()
    model, task = tanh_mlp(), make_task()
    maml = MAML(inner_lr=ALPHA, inner_steps=steps, first_order=first_order, backend=backend)
    ours = maml.meta_gradient(model, task, mse)
    wrapped = L2LMAML(inner_lr=ALPHA, inner_steps=steps, first_order=first_order).meta_gradient(
        model, task, mse
    )

    # learn2learn directly: clone, adapt, backward into a separate copy's .grad
    direct_model = copy.deepcopy(model)
    maml = l2l.algorithms.MAML(direct_model, lr=ALPHA, first_order=first_order)
    learner = maml.clone()
    xs, ys = one_batch(task.support)
    for _ in range(steps):
        learner.adapt(mse(learner(xs), ys))
    xq, yq = one_batch(task.query)
    mse(learner(xq), yq).backward()
    direct = {n: p.grad for n, p in direct_model.named_parameters()}

    for name in ours:
        torch.testing.assert_close(ours[name], direct[name], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(wrapped[name], direct[name], rtol=1e-10, atol=1e-12)


def test_maml_adam_inner_loop_runs_and_differs_from_sgd() -> None:
    model, task = tanh_mlp(), make_task()
    adam = flat_gradient(
        model, MAML(inner_lr=0.05, inner_steps=2, inner_optimizer="adam").meta_gradient(model, task, mse)
    )
    sgd = flat_gradient(model, MAML(inner_lr=0.05, inner_steps=2).meta_gradient(model, task, mse))
    assert torch.isfinite(adam).all()
    assert (adam - sgd).norm() > 1e-4


def test_maml_adam_first_inner_step_is_sign_like() -> None:
    """One differentiable Adam step moves each weight by lr * g / (|g| + eps'), where higher's Adam puts eps
    before the bias correction (eps' = eps / sqrt(1 - beta2)): FOMAML-Adam's gradient is the query gradient
    there."""
    model, task = tanh_mlp(), make_task()
    lr = 0.05
    got = flat_gradient(
        model,
        MAML(inner_lr=lr, inner_steps=1, inner_optimizer="adam", first_order=True).meta_gradient(
            model, task, mse
        ),
    )
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    xs, ys = one_batch(task.support)
    gs = torch.autograd.grad(mse(functional_call(model, theta, (xs,)), ys), list(theta.values()))
    eps = 1e-8 / (1 - 0.999) ** 0.5
    phi = {
        k: (v - lr * g / (g.abs() + eps)).detach().requires_grad_(True)
        for (k, v), g in zip(theta.items(), gs)
    }
    xq, yq = one_batch(task.query)
    expected = torch.autograd.grad(mse(functional_call(model, phi, (xq,)), yq), list(phi.values()))
    torch.testing.assert_close(got, torch.cat([g.reshape(-1) for g in expected]), rtol=1e-8, atol=1e-10)


def test_maml_rejects_bad_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(inner_steps=0)
    with pytest.raises(ValueError, match="inner optimizer"):
        MAML(inner_optimizer="rmsprop")
