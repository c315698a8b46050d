"""Episodic evaluation: mean query accuracy over test episodes with its 95% confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from metalearn.algorithms.base import LossFn, model_device, preserved_buffers
from metalearn.episodes.dataset import ClassDataset
from metalearn.episodes.sampler import EpisodeSampler
from metalearn.task import TaskData

BatchNormMode = Literal["transductive", "running"]
BATCHNORM_MODES = ("transductive", "running")
DEFAULT_QUERIES = 15


class Adapter(Protocol):
    """What evaluation needs of an algorithm: `adapt` (every `MetaAlgorithm` has it)."""

    def adapt(
        self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None
    ) -> nn.Module: ...


@dataclass(frozen=True)
class EvaluationResult:
    """Accuracy over `episodes` test episodes (a fraction, 0..1) and its 95% interval half-width
    `ci95 = 1.96 * sd / sqrt(episodes)`, `sd` the sample standard deviation (ddof 1) of the per-episode
    accuracies (NaN for one episode). `loss` is the mean query loss."""

    accuracy: float
    ci95: float
    episodes: int
    accuracies: tuple[float, ...]
    loss: float
    ways: int
    shots: int
    queries: int
    steps: int | None
    batchnorm: BatchNormMode

    def __str__(self) -> str:
        return (
            f"{100 * self.accuracy:.2f} +- {100 * self.ci95:.2f} % ({self.ways}-way {self.shots}-shot, "
            f"{self.episodes} episodes, {self.queries} queries per class, {self.batchnorm} BatchNorm)"
        )


def confidence95(accuracies: Tensor) -> float:
    """Half-width of the normal 95% interval of the mean: 1.96 * sample sd / sqrt(E)."""
    if len(accuracies) < 2:
        return math.nan
    return float(1.96 * accuracies.double().std(correction=1) / math.sqrt(len(accuracies)))


def evaluate(
    model: nn.Module,
    algorithm: Adapter,
    source: EpisodeSampler | ClassDataset,
    *,
    episodes: int = 600,
    ways: int | None = None,
    shots: int | None = None,
    queries: int | None = None,
    steps: int | None = None,
    batchnorm: BatchNormMode = "transductive",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    loss_fn: LossFn = F.cross_entropy,
    progress: bool = False,
) -> EvaluationResult:
    """Adapt to each of `episodes` test episodes and score the adapted model on its query set.

    `source` is an `EpisodeSampler` (its ways, shots and queries; any given here must agree) or a
    `ClassDataset` (then `ways` and `shots` are required, `queries` defaults to 15). `steps` is the
    number of test-time inner steps handed to `algorithm.adapt` (None: the algorithm's own, as in
    training). Episodes come from `generator`, or a fresh one seeded with `seed` (default 0), and are drawn
    one at a time: the same seed gives every algorithm the same episodes.

    `batchnorm="transductive"` (MAML's reference code): the model is put in training mode before `adapt`
    and the queries are predicted in training mode, with the query batch's own statistics.
    `"running"`: evaluation mode throughout, normalising with the running statistics. The caller's model is
    left as it was: each module's mode is restored, and buffers (BatchNorm statistics) after each episode.
    """
    sampler = _sampler(source, ways, shots, queries)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}, got {batchnorm!r}")
    if generator is not None and seed is not None:
        raise ValueError("give a seed or a generator, not both")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    training = batchnorm == "transductive"
    device = model_device(model)
    modes = [(module, module.training) for module in model.modules()]
    accuracies = torch.empty(episodes, dtype=torch.float64)
    losses = torch.empty(episodes, dtype=torch.float64)
    try:
        for e in tqdm(range(episodes), desc="episodes", disable=not progress, leave=False):
            task = sampler.sample(1, generator)[0]
            model.train(training)
            with preserved_buffers(model):
                adapted = algorithm.adapt(model, task.support, loss_fn, steps)
                adapted.train(training)
                inputs, targets = next(task.query_batches(device))
                with torch.no_grad():
                    logits = adapted(inputs)
                    losses[e] = float(loss_fn(logits, targets))
                    accuracies[e] = float((logits.argmax(dim=1) == targets).double().mean())
    finally:
        for module, mode in modes:
            module.training = mode
    return EvaluationResult(
        accuracy=float(accuracies.mean()),
        ci95=confidence95(accuracies),
        episodes=episodes,
        accuracies=tuple(accuracies.tolist()),
        loss=float(losses.mean()),
        ways=sampler.ways,
        shots=sampler.shots,
        queries=sampler.queries,
        steps=steps,
        batchnorm=batchnorm,
    )


def _sampler(
    source: EpisodeSampler | ClassDataset, ways: int | None, shots: int | None, queries: int | None
) -> EpisodeSampler:
    """The sampler to draw test episodes from, refusing settings that contradict a given sampler."""
    if isinstance(source, EpisodeSampler):
        given = {"ways": ways, "shots": shots, "queries": queries}
        clashes = [
            f"{key}={value} (the sampler's: {getattr(source, key)})"
            for key, value in given.items()
            if value is not None and value != getattr(source, key)
        ]
        if clashes:
            raise ValueError(f"evaluate: {', '.join(clashes)} contradict the sampler given")
        return source
    if isinstance(source, ClassDataset):
        if ways is None or shots is None:
            raise ValueError("evaluate on a ClassDataset needs ways and shots")
        return EpisodeSampler(source, ways, shots, DEFAULT_QUERIES if queries is None else queries)
    raise TypeError(f"evaluate needs an EpisodeSampler or a ClassDataset, got {type(source).__name__}")
