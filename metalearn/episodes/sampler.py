"""`EpisodeSampler`: N-way K-shot classification tasks drawn from a `ClassDataset` with an explicit generator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn.episodes.dataset import ClassDataset, DatasetError
from metalearn.task import Task


@dataclass(frozen=True)
class EpisodeIndex:
    """Which items one episode holds: class `classes[j]` gets label `j`; `items[j]` are row numbers within
    that class (the first `shots` for the support set, the rest for the query set)."""

    classes: Tensor  # int64 [ways]
    items: Tensor  # int64 [ways, shots + queries]


class EpisodeSampler:
    """Draws `ways`-way `shots`-shot episodes with `queries` query items per class (the `TaskSampler`
    protocol: `sample(n, generator) -> list[Task]`).

    An episode takes `ways` distinct classes in a random order (class `j` of the draw gets label `j`, so
    labels 0..ways-1 are assigned at random) and `shots + queries` distinct items of each, all drawn from
    the generator given, nothing else: a resumed `MetaTrainer`, which restores its generator, draws the
    episodes an uninterrupted run would. The same generator state gives the same episodes whatever `n`
    is (`sample(n)` equals `n` calls of `sample(1)`).

    A task is `Task(support=(x, y), query=(x, y))`: `x` float32 `[ways * k, C, H, W]` on the CPU (the
    trainer moves it), the uint8 values divided by 255, then `(x - mean) / std` per channel when
    `normalize=(mean, std)` is given; `y` int64 in 0..ways-1; items grouped by class, label order
    `0, 0, ..., 1, 1, ...`. Built by one gather from the dataset's uint8 tensor, no decoding.

    A dataset with fewer than `ways` classes, or a class with fewer than `shots + queries` items, is
    refused here (`DatasetError` naming the split, or the class and its source file).
    """

    def __init__(
        self,
        dataset: ClassDataset,
        ways: int,
        shots: int,
        queries: int,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        if ways < 2:
            raise ValueError(f"ways must be at least 2, got {ways}")
        if shots < 1:
            raise ValueError(f"shots must be at least 1, got {shots}")
        if queries < 1:
            raise ValueError(f"queries must be at least 1, got {queries}")
        if dataset.num_classes < ways:
            raise DatasetError(
                f"{dataset.name}: {dataset.num_classes} classes, fewer than the {ways} ways of an episode"
            )
        need = shots + queries
        small = torch.nonzero(dataset.base_sizes < need).flatten()
        if len(small):
            base = int(small[0])
            raise DatasetError(
                f"{dataset.class_source(base * dataset.rotations)}: class {dataset.base_names[base]!r} of "
                f"{dataset.name} has {int(dataset.base_sizes[base])} items, fewer than shots + queries = {need}"
            )
        self.dataset = dataset
        self.ways, self.shots, self.queries = ways, shots, queries
        self._normalize = _mean_std(normalize, dataset.image_shape[0])
        self._labels = (
            torch.arange(ways).repeat_interleave(shots),
            torch.arange(ways).repeat_interleave(queries),
        )

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.dataset.name!r}, {self.ways}-way {self.shots}-shot, "
            f"{self.queries} queries)"
        )

    def draw(self, generator: torch.Generator) -> EpisodeIndex:
        """The classes and items of one episode (two draws from `generator`)."""
        dataset = self.dataset
        classes = torch.randperm(dataset.num_classes, generator=generator)[: self.ways]
        sizes = dataset.base_sizes[classes // dataset.rotations]
        # a random permutation per class at once: uniform keys, past-the-end items pushed last
        keys = torch.rand(self.ways, int(sizes.max()), generator=generator)
        keys.masked_fill_(torch.arange(keys.shape[1]) >= sizes.unsqueeze(1), 2.0)
        items = keys.argsort(dim=1)[:, : self.shots + self.queries]
        return EpisodeIndex(classes, items)

    def episode(self, index: EpisodeIndex) -> Task:
        """The task an `EpisodeIndex` names."""
        dataset = self.dataset
        rows = dataset.item_index(index.classes, index.items)  # [ways, shots + queries]
        turns = dataset.quarter_turns(index.classes) if dataset.rotations > 1 else None
        names = ",".join(dataset.class_name(int(c)) for c in index.classes)
        return Task(
            support=(self._images(rows[:, : self.shots], turns), self._labels[0].clone()),
            query=(self._images(rows[:, self.shots :], turns), self._labels[1].clone()),
            name=f"{dataset.name}:{names}",
        )

    def _images(self, rows: Tensor, turns: Tensor | None) -> Tensor:
        """Float images of `rows` (`[ways, k]`), class by class: one `index_select` from the uint8 tensor
        (an order of magnitude faster than advanced indexing for image rows), rotations, scaling."""
        x = torch.index_select(self.dataset.images, 0, rows.flatten())
        if turns is not None:
            x = _rotate(x.view(self.ways, -1, *x.shape[1:]), turns).view(x.shape)
        x = x.float().div_(255)
        if self._normalize is not None:
            x.sub_(self._normalize[0]).div_(self._normalize[1])
        return x

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        return [self.episode(self.draw(generator)) for _ in range(n)]


def _rotate(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate each class's items `[ways, items, C, H, W]` by its own number of quarter turns, in place (`x`
    is the episode's own copy, gathered from the dataset)."""
    for turn in turns.unique().tolist():
        if turn:
            chosen = torch.nonzero(turns == turn).flatten()
            x[chosen] = torch.rot90(x[chosen], turn, dims=(-2, -1))
    return x


def _mean_std(
    normalize: tuple[Sequence[float], Sequence[float]] | None, channels: int
) -> tuple[Tensor, Tensor] | None:
    """Per-channel `(mean, std)` as `(C, 1, 1)` tensors, checked."""
    if normalize is None:
        return None
    mean, std = (torch.as_tensor(list(v), dtype=torch.float32) for v in normalize)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"normalize needs {channels} means and {channels} standard deviations")
    if bool((std <= 0).any()):
        raise ValueError("normalize: standard deviations must be positive")
    return mean.view(-1, 1, 1), std.view(-1, 1, 1)
