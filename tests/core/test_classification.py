"""Every registered algorithm on N-way K-shot classification: integer labels, cross-entropy, logits out.

The episodic evaluation calls `model.train()` (transductive BatchNorm) or `model.eval()` (running statistics)
before `adapt`, then predicts the queries with the adapted copy: every algorithm keeps that mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from metalearn import MetaTrainer, TrainerConfig
from metalearn.algorithms import (
    ALGORITHMS,
    MetaAlgorithm,
    PrototypeClassifier,
    algorithm_class,
    get_algorithm,
    hyper_parameter_names,
)
from metalearn.algorithms.base import freeze_batchnorm
from metalearn.algorithms.functional_maml import can_batch
from metalearn.task import Task
from tests.helpers import TemplateEpisodes, episode, one_batch, tiny_conv

CANONICAL = sorted({cls.name for cls in ALGORITHMS.values()})


def build(name: str) -> MetaAlgorithm:
    if name.startswith("l2l-"):
        pytest.importorskip("learn2learn")
    accepted = hyper_parameter_names(algorithm_class(name))
    return get_algorithm(name, **({"inner_steps": 2} if "inner_steps" in accepted else {}))


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor], modes: list[bool]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes


@pytest.mark.parametrize("name", CANONICAL)
def test_every_algorithm_meta_learns_from_class_labels(name: str) -> None:
    """The brief's call: support and query the same 5-way 1-shot batch, int64 labels, cross-entropy."""
    algorithm = build(name)
    model = tiny_conv().train()
    x, y = one_batch(episode().support)
    assert y.dtype == torch.int64
    before, modes = state_of(model), [m.training for m in model.modules()]
    result = algorithm.meta_step(model, Task(support=(x, y), query=(x, y)), cross_entropy)
    assert_untouched(model, before, modes)
    gradient = result.gradient
    assert result.buffers.keys() == before.keys() - {n for n, _ in model.named_parameters()}
    assert not torch.equal(result.buffers["1.running_mean"], before["1.running_mean"])  # the copy's moved
    names = [n for n, _ in model.named_parameters()]
    assert [k for k in gradient if not k.startswith("algorithm.")] == names
    for key, value in gradient.items():
        assert torch.isfinite(value).all(), key
    for n in names:  # every layer learns: a body left without its gradient (ANIL) would show here
        if n != "0.bias":  # the convolution's bias, which training-mode BatchNorm cancels
            assert gradient[n].abs().sum() > 0, n


MODES = ["train", "eval", "frozen-batchnorm"]


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    model.train(mode != "eval")
    if mode == "frozen-batchnorm":
        freeze_batchnorm(model)
    return model


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CANONICAL)
def test_adapt_keeps_the_mode_it_was_given(name: str, mode: str) -> None:
    """One evaluation path for all: `adapt`, then `adapted(xq).argmax(1)`; the copy keeps every layer's mode,
    so BatchNorm uses batch statistics (train) or the running ones (eval), which it then leaves alone."""
    algorithm = build(name)
    task = episode(queries=3)
    algorithm.meta_gradient(tiny_conv().train(), task, cross_entropy)  # Meta-SGD makes its rates here
    model = set_mode(tiny_conv(), mode)
    before, modes = state_of(model), [m.training for m in model.modules()]
    adapted = algorithm.adapt(model, task.support, cross_entropy, steps=2)
    xq, yq = one_batch(task.query)
    logits = adapted(xq)
    assert logits.shape == (len(yq), 5)
    accuracy = (logits.argmax(1) == yq).float().mean()
    assert 0 <= accuracy <= 1
    assert_untouched(model, before, modes)
    copy = adapted.embedding if isinstance(adapted, PrototypeClassifier) else adapted
    assert adapted.training == model.training
    assert [m.training for m in copy.modules()] == modes
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(copy.parameters(), model.parameters()))
    moved = not torch.equal(copy.state_dict()["1.running_mean"], before["1.running_mean"])
    assert moved == (mode == "train")  # batch statistics update the copy's running ones; eval keeps them


@pytest.mark.parametrize("name", ["maml", "metasgd"])
@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_over_episodes_matches_task_by_task(name: str, first_order: bool) -> None:
    """Evaluation-mode BatchNorm lets the torch.func backend batch the episodes; same numbers as one by one
    (first-order Meta-SGD's rate gradient is a formula on the vmap path, autograd on the other)."""
    algorithm = get_algorithm(name, inner_lr=0.1, inner_steps=2, first_order=first_order)
    model = tiny_conv(dtype=torch.float64).eval()
    tasks = [episode(seed=s, dtype=torch.float64) for s in (1, 2, 3)]
    assert can_batch(model, tasks)
    batched = list(algorithm.meta_steps(model, tasks, cross_entropy))
    for task, got in zip(tasks, batched):
        one = algorithm.meta_step(model, task, cross_entropy)
        assert got.gradient.keys() == one.gradient.keys()
        for key in one.gradient:
            torch.testing.assert_close(got.gradient[key], one.gradient[key], rtol=1e-9, atol=1e-12)
        assert got.loss == pytest.approx(one.loss, rel=1e-12)


@pytest.mark.parametrize("name", ["protonet", "anil", "metasgd", "maml"])
def test_meta_training_lowers_the_held_out_query_loss(name: str) -> None:
    """MetaTrainer with cross-entropy on shuffled-label episodes, judged by the one evaluation path."""
    sampler = TemplateEpisodes()
    held_out = sampler.sample(8, torch.Generator().manual_seed(99))
    hyper = {} if name == "protonet" else {"inner_lr": 0.5, "inner_steps": 2}
    config = TrainerConfig(tasks_per_batch=4, outer_lr=0.01, seed=3, progress=False)
    trainer = MetaTrainer(
        tiny_conv(), get_algorithm(name, **hyper), sampler, loss_fn=cross_entropy, device="cpu", config=config
    )

    def held_out_loss() -> float:
        trainer.model.train()  # transductive BatchNorm, as MAML's reference evaluation
        losses = []
        for t in held_out:
            xq, yq = one_batch(t.query)
            losses.append(cross_entropy(trainer.adapt(t.support)(xq), yq))
        return float(torch.stack(losses).mean().detach())

    before = held_out_loss()
    trainer.fit(25)
    after = held_out_loss()
    print(name, before, after)
    assert after < 0.8 * before
