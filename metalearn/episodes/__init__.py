"""Episodic N-way K-shot classification: class-indexed datasets, an episode sampler, episodic evaluation."""

from metalearn.episodes.dataset import ROTATIONS, ClassDataset, DatasetError
from metalearn.episodes.evaluate import Adapter, EvaluationResult, confidence95, evaluate
from metalearn.episodes.sampler import EpisodeIndex, EpisodeSampler

__all__ = [
    "ROTATIONS",
    "Adapter",
    "ClassDataset",
    "DatasetError",
    "EpisodeIndex",
    "EpisodeSampler",
    "EvaluationResult",
    "confidence95",
    "evaluate",
]
