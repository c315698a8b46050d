"""A resumed `MetaTrainer` run draws exactly the episodes an uninterrupted one draws, and ends the same."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn import MetaTrainer, Task, TrainerConfig
from metalearn.episodes import EpisodeSampler
from tests.core.test_episodes import coded_dataset
from tests.helpers import one_batch


class Recording(EpisodeSampler):
    """Remembers the support images of every episode it hands out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.drawn: list[torch.Tensor] = []

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        tasks = super().sample(n, generator)
        self.drawn.extend(one_batch(t.support)[0] for t in tasks)
        return tasks


def drawn(run: MetaTrainer) -> list[torch.Tensor]:
    """The support images of every episode `run`'s `Recording` sampler handed out."""
    assert isinstance(run.sampler, Recording)
    return run.sampler.drawn


def trainer() -> MetaTrainer:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3)
    )
    return MetaTrainer(
        net,
        "fomaml",
        Recording(coded_dataset([5] * 7, rotations=4), ways=3, shots=1, queries=2),
        loss_fn=F.cross_entropy,
        device="cpu",
        config=TrainerConfig(tasks_per_batch=2, outer_lr=0.01, seed=4, progress=False, checkpoint_every=1),
    )


def test_resume_draws_the_same_episodes_and_ends_with_the_same_weights(tmp_path) -> None:
    whole = trainer()
    whole.fit(4, checkpoint_dir=tmp_path / "whole")
    first = trainer()
    first.fit(2, checkpoint_dir=tmp_path / "split")
    second = trainer()
    second.fit(4, checkpoint_dir=tmp_path / "split", resume=True)
    assert len(drawn(whole)) == 8 and len(drawn(second)) == 4
    episodes = drawn(first) + drawn(second)
    assert all(torch.equal(a, b) for a, b in zip(drawn(whole), episodes))
    assert len({tuple(x.flatten().tolist()) for x in episodes}) == 8  # eight different episodes
    for (name, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
