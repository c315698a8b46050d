"""The plain baseline few-shot learners are measured against: pre-train, then fine-tune a new head.

Chen et al. 2019 ("A Closer Look at Few-shot Classification", Baseline): train the conv-4 as an ordinary
classifier over every training class, then for each test episode replace its head by a new `ways`-way
linear layer trained on the support set's features, the body frozen. Pre-training runs through the same
`MetaTrainer` as the meta-learners, with the registry's `baseline` algorithm (plain training: one optimizer
step per batch) on `ClassBatchSampler`'s batches, so it can be given exactly their budget in images.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from metalearn.algorithms.base import LossFn
from metalearn.episodes import ClassDataset, EpisodeSampler
from metalearn.task import Batch, Task, TaskData, cycle_batches


class ClassBatchSampler:
    """Plain classification batches (the `TaskSampler` protocol): each "task" is one batch of `ways` random
    classes x `per_class` random items, labelled with their class index in the dataset (0..classes-1), as
    both its support and its query set (the `baseline` algorithm trains on the support set only).

    Drawn through an `EpisodeSampler` (so the same images, scaling and rotations as the episodes) whose
    episode labels are mapped back to the dataset's class indices.
    """

    def __init__(self, dataset: ClassDataset, ways: int, per_class: int) -> None:
        if per_class < 2:
            raise ValueError(f"per_class must be at least 2, got {per_class}")
        self.dataset = dataset
        self._episodes = EpisodeSampler(dataset, ways, per_class - 1, 1)

    @property
    def batch_size(self) -> int:
        return self._episodes.ways * (self._episodes.shots + self._episodes.queries)

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} batches: n must be at least 1")
        tasks = []
        for _ in range(n):
            index = self._episodes.draw(generator)
            episode = self._episodes.episode(index)
            (xs, ys), (xq, yq) = cast(Batch, episode.support), cast(Batch, episode.query)
            batch = (torch.cat([xs, xq]), index.classes[torch.cat([ys, yq])])
            tasks.append(Task(support=batch, query=batch, name=episode.name))
        return tasks


@dataclass(eq=False)
class HeadFinetune:
    """Adapts a pre-trained classifier to an episode (the `Adapter` protocol of `metalearn.episodes`): a copy
    of its `features` module, frozen, and a new linear head of as many outputs as the support set has
    labels, zero-initialised and trained by `steps` full-batch Adam steps at `lr` on the support features.
    """

    steps: int = 100
    lr: float = 0.01
    body: str = "features"

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.lr > 0:
            raise ValueError(f"HeadFinetune needs steps >= 1 and lr > 0, got {self.steps} and {self.lr}")

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        if not hasattr(model, self.body):
            raise ValueError(f"the baseline's model has no {self.body!r} module to keep")
        features = copy.deepcopy(getattr(model, self.body))
        inputs, targets = next(cycle_batches(data, "support set", next(model.parameters()).device))
        with torch.no_grad():
            embedded = features(inputs)
        head = nn.Linear(embedded.shape[1], int(targets.max()) + 1).to(embedded)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        optimizer = torch.optim.Adam(head.parameters(), lr=self.lr)
        for _ in range(self.steps if steps is None else steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(embedded), targets).backward()
            optimizer.step()
        return nn.Sequential(OrderedDict(features=features, head=head))
