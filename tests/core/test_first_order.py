"""First-order algorithms (MetaIQA, Reptile, Pretrain) against hand-derived updates, and the no-side-effect
contract of `meta_gradient` / `adapt` for every algorithm."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from metalearn.algorithms import (
    ALGORITHMS,
    BilevelAdam,
    MetaAlgorithm,
    MetaIQA,
    Pretrain,
    Reptile,
    algorithm_class,
    get_algorithm,
    hyper_parameter_names,
)
from metalearn.task import Task
from tests.helpers import scalar64

W0 = 0.7
X_S, Y_S = 1.5, 2.0  # support: 0.5 * (1.5 w - 2)^2
X_Q, Y_Q = -0.8, 1.2  # query: 0.5 * (-0.8 w - 1.2)^2
EPS = 1e-8


def half_sse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((pred.reshape(target.shape) - target) ** 2).sum()


def scalar_model(w: float = W0) -> nn.Module:
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(w)
    return model


def weight_of(model: nn.Module) -> float:
    """The single weight of a `scalar_model` (or of an adapted copy of one)."""
    assert isinstance(model, nn.Linear)
    return model.weight.item()


def scalar_task() -> Task:
    return Task(support=(scalar64(X_S), scalar64(Y_S)), query=(scalar64(X_Q), scalar64(Y_Q)))


def grad_s(w: float) -> float:
    return (w * X_S - Y_S) * X_S


def grad_q(w: float) -> float:
    return (w * X_Q - Y_Q) * X_Q


class HandAdam:
    """torch.optim.Adam on one scalar, written out."""

    def __init__(self, lr: float, betas: tuple[float, float]) -> None:
        self.lr, (self.b1, self.b2) = lr, betas
        self.m = self.v = 0.0
        self.t = 0

    def step(self, w: float, g: float) -> float:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return w - self.lr * m_hat / (math.sqrt(v_hat) + EPS)


def hand_metaiqa(
    k: int, lr: float, betas: tuple[float, float], adam: HandAdam | None = None
) -> tuple[float, float]:
    """(query_gradient signal, displacement signal) for k support then k query Adam steps from W0."""
    adam = adam or HandAdam(lr, betas)
    w = W0
    for _ in range(k):
        w = adam.step(w, grad_s(w))
    grads = []
    for _ in range(k):
        g = grad_q(w)
        grads.append(g)
        w = adam.step(w, g)
    return sum(grads) / k, W0 - w


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.5, 0.9)])
def test_reptile_and_the_baselines_step_adam_with_the_betas_they_are_given(
    betas: tuple[float, float],
) -> None:
    """Reptile's inner loop (support, query, support...) and `adapt`, and the baselines' `adapt`."""
    model, task, lr = scalar_model(), scalar_task(), 0.1
    adam, w = HandAdam(lr, betas), W0
    for g in (grad_s, grad_q, grad_s):
        w = adam.step(w, g(w))
    reptile = Reptile(inner_lr=lr, inner_steps=3, inner_optimizer="adam", betas=betas)
    assert reptile.meta_gradient(model, task, half_sse)["weight"].item() == pytest.approx(W0 - w, rel=1e-10)
    adam, w = HandAdam(lr, betas), W0
    for _ in range(3):
        w = adam.step(w, grad_s(w))
    plain = Pretrain(adapt_lr=lr, adapt_steps=3, adapt_optimizer="adam", adapt_betas=betas)
    for adapted in (reptile.adapt(model, task.support, half_sse), plain.adapt(model, task.support, half_sse)):
        assert weight_of(adapted) == pytest.approx(w, rel=1e-10)


def test_adam_first_step_is_sign_like() -> None:
    adam = HandAdam(0.1, (0.9, 0.99))
    g = grad_s(W0)
    assert adam.step(W0, g) == pytest.approx(W0 - 0.1 * g / (abs(g) + EPS), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("signal", ["query_gradient", "displacement"])
def test_metaiqa_signal_matches_hand_adam(k: int, signal: str) -> None:
    lr, betas = 0.1, (0.9, 0.99)
    algo = MetaIQA(inner_lr=lr, inner_steps=k, betas=betas, signal=signal)  # type: ignore[arg-type]
    got = algo.meta_gradient(scalar_model(), scalar_task(), half_sse)["weight"].item()
    query_gradient, disp = hand_metaiqa(k, lr, betas)
    assert got == pytest.approx(query_gradient if signal == "query_gradient" else disp, rel=1e-10, abs=1e-12)


def test_metaiqa_k1_is_fomaml_with_one_adam_step() -> None:
    algo = MetaIQA(inner_lr=0.1, inner_steps=1, betas=(0.9, 0.99))
    got = algo.meta_gradient(scalar_model(), scalar_task(), half_sse)["weight"].item()
    g = grad_s(W0)
    assert got == pytest.approx(grad_q(W0 - 0.1 * g / (abs(g) + EPS)), rel=1e-10)


def test_bilevel_adam_alias() -> None:
    assert BilevelAdam is MetaIQA
    assert isinstance(get_algorithm("bilevel_adam"), MetaIQA)


def test_metaiqa_keeps_inner_adam_state_across_tasks() -> None:
    lr, betas, k = 0.1, (0.9, 0.99), 2
    other = Task(
        support=(torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[-3.0]], dtype=torch.float64)),
        query=(torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)),
    )
    model = scalar_model()
    persistent = MetaIQA(inner_lr=lr, inner_steps=k, betas=betas, reset_inner_state=False)
    persistent.meta_gradient(model, other, half_sse)
    second = persistent.meta_gradient(model, scalar_task(), half_sse)["weight"].item()
    fresh = MetaIQA(inner_lr=lr, inner_steps=k, betas=betas).meta_gradient(model, scalar_task(), half_sse)
    assert second != pytest.approx(fresh["weight"].item(), rel=1e-6)

    # hand oracle: the same Adam continues through the first task (2k steps) into the second
    adam = HandAdam(lr, betas)
    w = W0
    for _ in range(k):
        w = adam.step(w, (w * 0.5 + 3.0) * 0.5)
    for _ in range(k):
        w = adam.step(w, (w * 2.0 - 0.3) * 2.0)
    expected, _ = hand_metaiqa(k, lr, betas, adam)
    assert second == pytest.approx(expected, rel=1e-10)

    # and a default MetaIQA forgets: two calls in a row give the same signal
    again = MetaIQA(inner_lr=lr, inner_steps=k, betas=betas)
    again.meta_gradient(model, other, half_sse)
    assert again.meta_gradient(model, scalar_task(), half_sse)["weight"].item() == pytest.approx(
        fresh["weight"].item(), rel=1e-12
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_reptile_is_displacement_after_sgd_on_support_then_query(steps: int) -> None:
    lr = 0.2
    got = Reptile(inner_lr=lr, inner_steps=steps).meta_gradient(scalar_model(), scalar_task(), half_sse)
    w = W0
    for i in range(steps):  # batches cycle: support, query, support, ...
        w -= lr * (grad_s(w) if i % 2 == 0 else grad_q(w))
    assert got["weight"].item() == pytest.approx(W0 - w, rel=1e-12)


def test_reptile_points_from_adapted_weights_to_theta() -> None:
    # both sets pull w upwards (optimum w = 10): the meta-gradient theta - phi is negative,
    # so an outer SGD step theta - eps * grad moves theta towards phi
    task = Task(support=(scalar64(1.0), scalar64(10.0)), query=(scalar64(1.0), scalar64(10.0)))
    model = scalar_model(0.0)
    algo = Reptile(inner_lr=0.1, inner_steps=2)
    grad = algo.meta_gradient(model, task, half_sse)["weight"].item()
    phi = weight_of(algo.adapt(model, task.support, half_sse))
    assert grad < 0
    assert grad == pytest.approx(0.0 - phi, rel=1e-12)


def test_pretrain_gradient_is_plain_loss_gradient_on_support_and_query() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    g = torch.Generator().manual_seed(1)
    xs, ys, xq, yq = (torch.randn(4, d, generator=g, dtype=torch.float64) for d in (2, 1, 2, 1))
    mse = torch.nn.functional.mse_loss
    got = Pretrain().meta_gradient(model, Task(support=(xs, ys), query=(xq, yq)), mse)
    ref = copy.deepcopy(model)
    mse(ref(torch.cat([xs, xq])), torch.cat([ys, yq])).backward()  # equal-size sets: pooled mean
    for name, p in ref.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-12, atol=1e-14)


# -- no side effects, for every registered algorithm ---------------------------------------------------


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1))
    model.train()
    return model


def bn_task() -> Task:
    g = torch.Generator().manual_seed(2)
    return Task(
        support=(torch.randn(6, 2, generator=g) + 3.0, torch.randn(6, 1, generator=g)),
        query=(torch.randn(5, 2, generator=g) - 2.0, torch.randn(5, 1, generator=g)),
    )


def build(name: str):
    if name.startswith("l2l"):
        pytest.importorskip("learn2learn")
    kwargs = {"inner_steps": 2} if "inner_steps" in hyper_parameter_names(algorithm_class(name)) else {}
    return get_algorithm(name, **kwargs)


def refuses_regression(algo: MetaAlgorithm) -> bool:
    """True (after checking the one-line refusal) for a classification-only algorithm (ProtoNets): its side
    effects are checked on classification tasks in test_classification.py."""
    if not algo.needs_class_labels:
        return False
    with pytest.raises(ValueError, match=f"^{algo.name} needs integer class labels"):
        algo.meta_gradient(bn_model(), bn_task(), torch.nn.functional.mse_loss)
    return True


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_meta_gradient_leaves_model_untouched(name: str) -> None:
    algo = build(name)
    if refuses_regression(algo):
        return
    model, task = bn_model(), bn_task()
    before = state_of(model)
    for _ in range(2):  # second call exercises reused scratch copies / wrappers
        gradient = algo.meta_gradient(model, task, torch.nn.functional.mse_loss)
        assert_same_state(model, before)
        assert all(p.grad is None for p in model.parameters())
        assert model.training
    names = [n for n, _ in model.named_parameters()]
    assert [n for n in gradient if not n.startswith("algorithm.")] == names
    assert all(torch.isfinite(g).all() for g in gradient.values())
    assert sum(g.abs().sum() for g in gradient.values()) > 0


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_meta_step_reports_adapted_buffers(name: str) -> None:
    algo = build(name)
    if refuses_regression(algo):
        return
    model, task = bn_model(), bn_task()
    result = algo.meta_step(model, task, torch.nn.functional.mse_loss)
    assert set(result.buffers) == {n for n, _ in model.named_buffers()}
    # the adapted copy saw shifted data in train mode: its running mean moved, the model's did not
    assert not torch.equal(result.buffers["1.running_mean"], model.state_dict()["1.running_mean"])
    assert math.isfinite(result.loss)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_adapt_returns_new_model_and_leaves_original(name: str) -> None:
    algo = build(name)
    if refuses_regression(algo):
        return
    model, task = bn_model(), bn_task()
    algo.meta_gradient(model, task, torch.nn.functional.mse_loss)  # e.g. Meta-SGD creates its rates
    before = state_of(model)
    adapted = algo.adapt(model, task.support, torch.nn.functional.mse_loss, steps=2)
    assert adapted is not model
    assert_same_state(model, before)
    assert all(p.grad is None for p in model.parameters())
    moved = any(not torch.equal(a, b) for a, b in zip(adapted.parameters(), model.parameters()))
    assert moved
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(adapted.parameters(), model.parameters()))


def test_adapt_steps_default_and_explicit() -> None:
    model = scalar_model()
    task = scalar_task()
    lr = 0.2
    adapted = Reptile(inner_lr=lr, inner_steps=3).adapt(model, task.support, half_sse)
    w = W0
    for _ in range(3):
        w -= lr * grad_s(w)
    assert weight_of(adapted) == pytest.approx(w, rel=1e-12)
    one = MetaIQA(inner_lr=0.1, inner_steps=4, betas=(0.9, 0.99)).adapt(
        model, task.support, half_sse, steps=1
    )
    assert weight_of(one) == pytest.approx(W0 - 0.1 * math.copysign(1, grad_s(W0)), rel=1e-7)
