"""Prototypical Networks against the paper's formula written out, finite differences, and its own classifier."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from metalearn.algorithms import ProtoNet, PrototypeClassifier, get_algorithm
from metalearn.algorithms.protonet import prototype_logits
from metalearn.task import Task
from tests.helpers import episode, one_batch, tiny_conv

WAYS = 5


def by_hand(
    model: Callable[[torch.Tensor], torch.Tensor],
    task: Task,
    distance: str = "squared_euclidean",
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Snell et al.'s eq. 1-2 as written: class means, then a softmax over minus squared distances (the
    [B, N, D] difference, not the library's expansion); one forward of support + query, as their code."""
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
    embeddings = model(torch.cat([xs, xq])).flatten(1)
    support, query = embeddings[: len(ys)], embeddings[len(ys) :]
    prototypes = torch.stack([support[ys == c].mean(0) for c in range(WAYS)])
    if distance == "cosine":
        logits = scale * nn.functional.cosine_similarity(query[:, None], prototypes[None], dim=-1)
    else:
        logits = -scale * ((query[:, None, :] - prototypes[None]) ** 2).sum(-1)
    return logits, cross_entropy(logits, yq)


@pytest.mark.parametrize(("distance", "scale"), [("squared_euclidean", 1.0), ("cosine", 10.0)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_meta_gradient_matches_the_papers_formula(distance: str, scale: float, mode: str) -> None:
    model = tiny_conv(dtype=torch.float64).train(mode == "train")
    task = episode(shots=3, queries=2, dtype=torch.float64)
    result = ProtoNet(distance=distance, scale=scale).meta_step(model, task, cross_entropy)
    reference = copy.deepcopy(model)
    _, loss = by_hand(reference, task, distance, scale)
    loss.backward()
    assert result.loss == pytest.approx(loss.item(), rel=1e-12)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(result.gradient[name], p.grad, rtol=1e-10, atol=1e-12)
    for name, buffer in reference.named_buffers():  # the copy's statistics after the same forward pass
        torch.testing.assert_close(result.buffers[name], buffer, rtol=1e-12, atol=0)


def test_meta_gradient_matches_finite_differences() -> None:
    model = tiny_conv(dtype=torch.float64).train()
    task = episode(shots=2, queries=2, dtype=torch.float64)
    got = ProtoNet().meta_gradient(model, task, cross_entropy)
    names = [n for n, _ in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = {k: b.clone() for k, b in model.named_buffers()}

    def loss_at(flat: torch.Tensor) -> float:
        params, offset = {}, 0
        for name, p in model.named_parameters():
            params[name] = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        with torch.no_grad():
            return by_hand(lambda x: functional_call(model, (params, buffers), (x,)), task)[1].item()

    h = 1e-6
    expected = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        expected[i] = (loss_at(theta + e) - loss_at(theta - e)) / (2 * h)
    flat = torch.cat([got[n].reshape(-1) for n in names])
    torch.testing.assert_close(flat, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_adapted_classifier_predicts_as_training_scored(mode: str) -> None:
    """`adapt` then `classifier(xq)`: the logits meta-training differentiated, in either BatchNorm mode."""
    model = tiny_conv(dtype=torch.float64).train(mode == "train")
    task = episode(shots=2, queries=3, dtype=torch.float64)
    protonet = ProtoNet()
    classifier = protonet.adapt(model, task.support, cross_entropy, steps=7)  # steps: no inner loop to run
    assert isinstance(classifier, PrototypeClassifier) and classifier.embedding is not model
    xq, yq = one_batch(task.query)
    logits, loss = by_hand(copy.deepcopy(model), task)
    torch.testing.assert_close(classifier(xq), logits, rtol=1e-10, atol=1e-12)
    assert protonet.meta_step(model, task, cross_entropy).loss == pytest.approx(loss.item(), rel=1e-12)


def test_a_streamed_support_set_pools_its_batches() -> None:
    model = tiny_conv(dtype=torch.float64).eval()
    task = episode(shots=2, dtype=torch.float64)
    xs, ys = one_batch(task.support)
    halves = [(xs[::2], ys[::2]), (xs[1::2], ys[1::2])]  # one shot of every class in each batch
    whole = ProtoNet().meta_gradient(model, task, cross_entropy)
    streamed = ProtoNet().meta_gradient(model, Task(support=halves, query=task.query), cross_entropy)
    for name in whole:
        torch.testing.assert_close(streamed[name], whole[name], rtol=1e-10, atol=1e-12)


def test_regression_targets_are_refused_in_one_line() -> None:
    model = tiny_conv()
    task = Task(
        support=(torch.randn(4, 1, 8, 8), torch.randn(4)), query=(torch.randn(4, 1, 8, 8), torch.randn(4))
    )
    with pytest.raises(
        ValueError, match=r"^protonet needs integer class labels .*got torch.float32 targets$"
    ):
        ProtoNet().meta_step(model, task, nn.functional.mse_loss)
    with pytest.raises(ValueError, match="^protonet needs integer class labels"):
        ProtoNet().adapt(model, task.support, nn.functional.mse_loss)


def test_a_class_without_shots_and_a_bad_embedding_are_named() -> None:
    xs, ys = one_batch(episode().support)
    gap = Task(support=(xs, ys.masked_fill(ys == 1, 2)), query=(xs, ys))
    with pytest.raises(ValueError, match=r"no example of class \[1\]"):
        ProtoNet().meta_step(tiny_conv(), gap, cross_entropy)
    scalar = nn.Sequential(nn.Flatten(0))
    with pytest.raises(ValueError, match=r"embeddings \[batch, dim\], got \[960\]"):
        ProtoNet().meta_step(scalar, episode(), cross_entropy)


def test_bad_hyper_parameters_fail_when_built() -> None:
    with pytest.raises(ValueError, match="unknown protonet distance 'manhattan'"):
        get_algorithm("protonet", distance="manhattan")
    with pytest.raises(ValueError, match="scale must be a positive number"):
        ProtoNet(scale=0.0)


def test_distances_run_in_full_precision_under_autocast() -> None:
    """The expanded squared distance cancels digits: bf16 autocast must not reach it (the CUDA default)."""
    g = torch.Generator().manual_seed(0)
    queries, prototypes = torch.randn(6, 40, generator=g) + 5, torch.randn(3, 40, generator=g) + 5
    exact = prototype_logits(queries, prototypes, "squared_euclidean", 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = prototype_logits(queries, prototypes, "squared_euclidean", 1.0)
        half = prototype_logits(queries.bfloat16(), prototypes.bfloat16(), "squared_euclidean", 1.0)
    assert inside.dtype == half.dtype == torch.float32
    torch.testing.assert_close(inside, exact)
    direct = -((queries.bfloat16().float()[:, None] - prototypes.bfloat16().float()[None]) ** 2).sum(-1)
    torch.testing.assert_close(half, direct, rtol=1e-5, atol=1e-3)
