"""ANIL against independent oracles: a torch.func re-derivation, finite differences, learn2learn's MAML on the
head, and the core's MAML where the body has no parameters (then the two are the same algorithm)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_
from torch.nn.functional import cross_entropy, mse_loss

from metalearn.algorithms import ANIL, MAML, get_algorithm
from metalearn.task import Task
from tests.helpers import as_double, episode, one_batch, tiny_conv

LR = 0.3
HEAD = "5."  # tiny_conv's last child, the Linear head


def flat(gradient: dict[str, torch.Tensor], model: nn.Module) -> torch.Tensor:
    return torch.cat([gradient[n].reshape(-1) for n, _ in model.named_parameters()])


def func_oracle(model: nn.Module, task: Task, steps: int) -> dict[str, torch.Tensor]:
    """torch.func from scratch: the whole network is run at every inner step (no feature cache); the head
    alone takes SGD steps; `grad` of the query loss w.r.t. every parameter (second order). Training-mode
    BatchNorm normalises with batch statistics without tracking them (torch.func's own recipe)."""
    model = copy.deepcopy(model)
    if model.training:
        replace_all_batch_norm_modules_(model)
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    support = list(task.support) if isinstance(task.support, list) else [one_batch(task.support)]

    def loss(head: dict, body: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(functional_call(model, ({**body, **head}, buffers), (x,)), y)

    def objective(params: dict) -> torch.Tensor:
        head = {k: v for k, v in params.items() if k.startswith(HEAD)}
        body = {k: v for k, v in params.items() if not k.startswith(HEAD)}
        for step in range(steps):
            x, y = support[step % len(support)]
            g = grad(loss)(head, body, x, y)
            head = {k: head[k] - LR * g[k] for k in head}
        return loss(head, body, *one_batch(task.query))

    return grad(objective)({k: p.detach() for k, p in model.named_parameters()})


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("steps", [1, 3])
def test_anil_matches_a_torch_func_re_derivation(steps: int, mode: str) -> None:
    model = tiny_conv(dtype=torch.float64).train(mode == "train")
    task = episode(shots=2, dtype=torch.float64)
    got = ANIL(inner_lr=LR, inner_steps=steps).meta_gradient(model, task, cross_entropy)
    expected = func_oracle(model, task, steps)
    assert list(got) == [n for n, _ in model.named_parameters()]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-12)


def test_a_streamed_support_set_runs_the_body_once_per_batch_drawn() -> None:
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, dtype=torch.float64)
    xs, ys = one_batch(task.support)
    streamed = Task(support=[(xs[::2], ys[::2]), (xs[1::2], ys[1::2])], query=task.query)
    body_runs = 0

    def count(*_: object) -> None:
        nonlocal body_runs
        body_runs += 1

    model[0].register_forward_hook(count)
    got = ANIL(inner_lr=LR, inner_steps=3).meta_gradient(model, streamed, cross_entropy)
    assert body_runs == 3 + 1  # one support batch per step, then the query
    body_runs = 0
    ANIL(inner_lr=LR, inner_steps=5).meta_gradient(model, task, cross_entropy)
    assert body_runs == 1 + 1  # a single support batch: its features once, whatever the steps
    body_runs = 0
    ANIL(inner_lr=LR).adapt(model, task.support, cross_entropy, steps=5)
    assert body_runs == 1
    expected = func_oracle(model, streamed, 3)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-12)


def test_anil_matches_finite_differences() -> None:
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, dtype=torch.float64)
    got = flat(ANIL(inner_lr=LR, inner_steps=2).meta_gradient(model, task, cross_entropy), model)
    names = [n for n, _ in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)

    def objective(vector: torch.Tensor) -> float:
        params, offset = {}, 0
        for name, p in model.named_parameters():
            params[name] = vector[offset : offset + p.numel()].view_as(p).clone().requires_grad_(True)
            offset += p.numel()
        for _ in range(2):
            loss = cross_entropy(functional_call(model, params, (xs,)), ys)
            head = [n for n in names if n.startswith(HEAD)]
            grads = torch.autograd.grad(loss, [params[n] for n in head])
            params.update(
                {n: (params[n] - LR * g).detach().requires_grad_(True) for n, g in zip(head, grads)}
            )
        with torch.no_grad():
            return cross_entropy(functional_call(model, params, (xq,)), yq).item()

    h = 1e-6
    expected = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        expected[i] = (objective(theta + e) - objective(theta - e)) / (2 * h)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_anil_matches_learn2learn_maml_on_the_head(steps: int, first_order: bool) -> None:
    pytest.importorskip("learn2learn")
    from metalearn.algorithms.l2l import import_learn2learn

    l2l = import_learn2learn()
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, dtype=torch.float64)
    got = ANIL(inner_lr=LR, inner_steps=steps, first_order=first_order).meta_gradient(
        model, task, cross_entropy
    )

    reference = copy.deepcopy(model)
    body, head = reference[:5], l2l.algorithms.MAML(reference[5], lr=LR, first_order=first_order)
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
    learner = head.clone()
    features = body(xs)
    for _ in range(steps):
        learner.adapt(cross_entropy(learner(features), ys))
    cross_entropy(learner(body(xq)), yq).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("first_order", [False, True])
def test_anil_is_maml_when_the_body_has_no_parameters(optimizer: str, first_order: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).double()
    task = episode(shots=2, dtype=torch.float64)
    hyper: dict[str, Any] = {
        "inner_lr": 0.05,
        "inner_steps": 3,
        "first_order": first_order,
        "inner_optimizer": optimizer,
    }
    got = ANIL(**hyper).meta_step(model, task, cross_entropy)
    expected = MAML(**hyper).meta_step(model, task, cross_entropy)
    for name in expected.gradient:
        torch.testing.assert_close(got.gradient[name], expected.gradient[name], rtol=1e-10, atol=1e-12)
    assert got.loss == pytest.approx(expected.loss, rel=1e-12)


class Regressor(nn.Module):
    """An IQA-like network: `head(body(x))` squeezed to [B] (a reshape), or scaled after the head (refused)."""

    def __init__(self, scaled: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.head = nn.Linear(4, 1)
        self.scaled = scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x)).squeeze(-1)
        return 2 * out if self.scaled else out


def regression_task() -> Task:
    g = torch.Generator().manual_seed(0)
    return Task(
        support=(torch.randn(6, 3, generator=g), torch.randn(6, generator=g)),
        query=(torch.randn(5, 3, generator=g), torch.randn(5, generator=g)),
    )


def test_a_squeezed_head_output_is_followed_and_other_post_processing_refused() -> None:
    model, task = Regressor().double(), regression_task()
    task = Task(as_double(task.support), as_double(task.query))
    got = ANIL(inner_lr=LR, inner_steps=2, head="head").meta_gradient(model, task, mse_loss)
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
    params = dict(model.named_parameters())

    def objective(p: dict) -> torch.Tensor:  # the head's steps written out with torch.func
        head = {k: v for k, v in p.items() if k.startswith("head.")}
        for _ in range(2):
            g = grad(lambda h: mse_loss(functional_call(model, {**p, **h}, (xs,)), ys))(head)
            head = {k: head[k] - LR * g[k] for k in head}
        return mse_loss(functional_call(model, {**p, **head}, (xq,)), yq)

    expected = grad(objective)({k: v.detach() for k, v in params.items()})
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="^anil: the model's output is not the output of its head 'head'"):
        ANIL().meta_gradient(Regressor(scaled=True), regression_task(), mse_loss)


def test_head_names_are_checked() -> None:
    model, task = tiny_conv(), episode()
    with pytest.raises(
        ValueError, match=r"^anil: head 'fc' is not a module of the model \(its children: 0, 1, 2"
    ):
        ANIL(head="fc").meta_gradient(model, task, cross_entropy)
    with pytest.raises(ValueError, match="^anil: head '2' has no trainable parameters"):
        ANIL(head="2").meta_gradient(model, task, cross_entropy)
    with pytest.raises(ValueError, match="^anil: the model has no child module"):
        ANIL().meta_gradient(
            nn.Linear(64, 5),
            Task(support=(torch.randn(3, 64), torch.arange(3)), query=(torch.randn(3, 64), torch.arange(3))),
            cross_entropy,
        )
    with pytest.raises(ValueError, match="head must name a module"):
        get_algorithm("anil", head="")
    default = ANIL(inner_lr=LR).meta_gradient(model, task, cross_entropy)
    named = ANIL(inner_lr=LR, head="5").meta_gradient(model, task, cross_entropy)
    assert all(torch.equal(default[k], named[k]) for k in default)


def test_adapt_steps_the_head_alone() -> None:
    model = tiny_conv(dtype=torch.float64).eval()
    task = episode(shots=2, dtype=torch.float64)
    adapted = ANIL(inner_lr=LR).adapt(model, task.support, cross_entropy, steps=3)
    xs, ys = one_batch(task.support)
    features = model[:5](xs)
    head = copy.deepcopy(model[5])
    for _ in range(3):
        grads = torch.autograd.grad(cross_entropy(head(features), ys), list(head.parameters()))
        with torch.no_grad():
            for p, g in zip(head.parameters(), grads):
                p.sub_(LR * g)
    for (name, a), b in zip(adapted.named_parameters(), model.parameters()):
        if not name.startswith(HEAD):
            assert torch.equal(a, b), name  # the body is the model's
    assert isinstance(adapted, nn.Sequential)
    for a, b in zip(adapted[5].parameters(), head.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
