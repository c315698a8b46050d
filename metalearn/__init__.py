"""metalearn: task abstractions, pluggable meta-learning algorithms and one shared training loop."""

from metalearn.algorithms import (
    ALGORITHMS,
    MAML,
    MetaAlgorithm,
    MetaIQA,
    Pretrain,
    Reptile,
    get_algorithm,
    register_algorithm,
)
from metalearn.runs import ResumeMismatchError, RunExistsError, RunFolderError, RunLockedError
from metalearn.sampler import FactoryTaskSampler, TaskSampler
from metalearn.task import Task, TaskError
from metalearn.trainer import DivergedError, Interrupted, MetaTrainer, TrainerConfig, mse_loss

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "MAML",
    "DivergedError",
    "FactoryTaskSampler",
    "Interrupted",
    "MetaAlgorithm",
    "MetaIQA",
    "MetaTrainer",
    "Pretrain",
    "Reptile",
    "ResumeMismatchError",
    "RunExistsError",
    "RunFolderError",
    "RunLockedError",
    "Task",
    "TaskError",
    "TaskSampler",
    "TrainerConfig",
    "get_algorithm",
    "mse_loss",
    "register_algorithm",
]
