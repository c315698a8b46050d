"""`evaluate`: accuracy and its interval as defined, BatchNorm modes, the caller's model left unchanged."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from metalearn import get_algorithm
from metalearn.episodes import ClassDataset, EpisodeSampler, confidence95, evaluate
from metalearn.episodes.evaluate import BatchNormMode
from metalearn.task import cycle_batches
from tests.helpers import one_batch


def pattern_dataset(
    classes: int = 6, per_class: int = 10, noise: float = 180.0, seed: int = 0
) -> ClassDataset:
    """Class c lights pixel c of an 4x4 image by 70, plus uniform noise: 1-shot episodes are not trivial."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, noise, size=(classes * per_class, 1, 4, 4))
    for c in range(classes):
        images[c * per_class : (c + 1) * per_class, 0, c // 4, c % 4] += 70
    images = np.clip(images, 0, 255).astype(np.uint8)
    return ClassDataset(images, [per_class] * classes, [f"p{c}" for c in range(classes)], "patterns")


class Prototypes(nn.Module):
    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.centres = centres
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return -torch.cdist(x.flatten(1), self.centres)


class PixelPrototypes:
    """A dummy algorithm: nearest class mean in pixel space; records what `evaluate` hands it."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.adapted: list[Prototypes] = []

    def adapt(self, model, data, loss_fn, steps=None):
        x, y = next(cycle_batches(data))
        self.calls.append({"training": model.training, "steps": steps, "support": x.clone()})
        centres = torch.stack([x[y == c].flatten(1).mean(0) for c in range(int(y.max()) + 1)])
        self.adapted.append(Prototypes(centres))
        return self.adapted[-1]


def test_accuracy_is_the_mean_of_episode_accuracies_and_ci95_the_normal_interval() -> None:
    dataset = pattern_dataset()
    result = evaluate(
        nn.Identity(), PixelPrototypes(), dataset, episodes=40, ways=3, shots=1, queries=4, seed=5
    )
    accs = np.array(result.accuracies)
    assert result.episodes == len(accs) == 40
    assert 0.4 < result.accuracy < 0.99 and accs.std() > 0  # neither trivial nor constant
    assert result.accuracy == pytest.approx(accs.mean(), abs=1e-12)
    assert result.ci95 == pytest.approx(1.96 * stats.sem(accs), rel=1e-9)  # scipy: sd (ddof 1) / sqrt(E)
    assert np.allclose(accs * 12, np.round(accs * 12))  # fractions of the 3 x 4 queries
    # the first episode scored by hand: the same generator draws the same episode
    task = EpisodeSampler(dataset, 3, 1, 4).sample(1, torch.Generator().manual_seed(5))[0]
    (xs, ys), (xq, yq) = one_batch(task.support), one_batch(task.query)
    centres = torch.stack([xs[ys == c].flatten(1).mean(0) for c in range(3)])
    by_hand = (torch.cdist(xq.flatten(1), centres).argmin(1) == yq).double().mean().item()
    assert accs[0] == pytest.approx(by_hand)
    assert str(result).startswith(f"{100 * result.accuracy:.2f} +- {100 * result.ci95:.2f} % (3-way 1-shot")


def test_confidence95_of_one_episode_is_nan() -> None:
    assert np.isnan(confidence95(torch.tensor([0.5])))
    assert confidence95(torch.tensor([0.0, 1.0])) == pytest.approx(1.96 * np.std([0, 1], ddof=1) / np.sqrt(2))


@pytest.mark.parametrize(("batchnorm", "training"), [("transductive", True), ("running", False)])
def test_batchnorm_mode_sets_the_model_mode_for_adapt_and_queries(
    batchnorm: BatchNormMode, training: bool
) -> None:
    algorithm = PixelPrototypes()
    model = nn.Sequential(nn.BatchNorm2d(1))
    model.train(not training)  # the opposite of what evaluation needs
    evaluate(model, algorithm, pattern_dataset(), episodes=3, ways=3, shots=1, queries=2, batchnorm=batchnorm)
    assert [c["training"] for c in algorithm.calls] == [training] * 3
    assert [a.seen_training for a in algorithm.adapted] == [[training]] * 3
    assert model.training is not training  # restored


def test_test_time_steps_reach_adapt_and_default_to_the_algorithm_own() -> None:
    algorithm = PixelPrototypes()
    evaluate(nn.Identity(), algorithm, pattern_dataset(), episodes=2, ways=2, shots=1, queries=2, steps=7)
    evaluate(nn.Identity(), algorithm, pattern_dataset(), episodes=2, ways=2, shots=1, queries=2)
    assert [c["steps"] for c in algorithm.calls] == [7, 7, None, None]


def test_every_algorithm_sees_the_same_episodes_for_a_seed() -> None:
    a, b, c = PixelPrototypes(), PixelPrototypes(), PixelPrototypes()
    sampler = EpisodeSampler(pattern_dataset(), 3, 2, 2)
    evaluate(nn.Identity(), a, sampler, episodes=4, seed=11)
    evaluate(nn.Identity(), b, sampler, episodes=4, generator=torch.Generator().manual_seed(11))
    evaluate(nn.Identity(), c, sampler, episodes=4, seed=12)
    assert all(torch.equal(x["support"], y["support"]) for x, y in zip(a.calls, b.calls))
    assert not all(torch.equal(x["support"], y["support"]) for x, y in zip(a.calls, c.calls))


class Leaky:
    """An algorithm whose adapted module runs the model itself (as a prototype classifier does)."""

    def adapt(self, model, data, loss_fn, steps=None):
        x, _ = next(cycle_batches(data))
        model(x)  # in training mode: moves the BatchNorm running statistics
        return model


def bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3)
    )


@pytest.mark.parametrize("algorithm", [Leaky(), get_algorithm("fomaml", inner_lr=0.1, inner_steps=2)])
def test_the_callers_model_is_left_unchanged(algorithm) -> None:
    model = bn_net()
    model[1].eval()  # a frozen BatchNorm inside a training model: per-module modes come back
    before = copy.deepcopy(model.state_dict())
    evaluate(
        model, algorithm, pattern_dataset(), episodes=3, ways=3, shots=2, queries=2, loss_fn=F.cross_entropy
    )
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_maml_from_the_registry_improves_with_test_time_steps() -> None:
    """A real algorithm through `evaluate`: more inner steps on the support set, better query accuracy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    maml = get_algorithm("maml", inner_lr=0.5, inner_steps=1)
    sampler = EpisodeSampler(pattern_dataset(noise=30), 3, 2, 5)
    none = evaluate(model, maml, sampler, episodes=20, steps=0, batchnorm="running")
    some = evaluate(model, maml, sampler, episodes=20, steps=10, batchnorm="running")
    assert none.accuracy < 0.6 < 0.9 < some.accuracy
    assert none.steps == 0 and some.steps == 10


def test_contradictory_or_missing_settings_are_refused() -> None:
    sampler = EpisodeSampler(pattern_dataset(), 3, 1, 2)
    algorithm = PixelPrototypes()
    with pytest.raises(ValueError, match=r"ways=5 \(the sampler's: 3\), queries=15 \(the sampler's: 2\)"):
        evaluate(nn.Identity(), algorithm, sampler, ways=5, queries=15)
    with pytest.raises(ValueError, match="needs ways and shots"):
        evaluate(nn.Identity(), algorithm, pattern_dataset(), ways=3)
    with pytest.raises(ValueError, match="a seed or a generator, not both"):
        evaluate(nn.Identity(), algorithm, sampler, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        evaluate(nn.Identity(), algorithm, sampler, batchnorm="train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        evaluate(nn.Identity(), algorithm, sampler, episodes=0)
    assert algorithm.calls == []  # refused before any episode ran
