"""metalearn: task abstractions, pluggable meta-learning algorithms and one shared training loop.

The public names below are imported on first use (PEP 562), so that `import metalearn` (and the
`metalearn --help` command) costs no torch import until something needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalearn.lazy import lazy_exports

if TYPE_CHECKING:
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

_EXPORTS = {
    "metalearn.algorithms": (
        "ALGORITHMS",
        "MAML",
        "MetaAlgorithm",
        "MetaIQA",
        "Pretrain",
        "Reptile",
        "get_algorithm",
        "register_algorithm",
    ),
    "metalearn.runs": ("ResumeMismatchError", "RunExistsError", "RunFolderError", "RunLockedError"),
    "metalearn.sampler": ("FactoryTaskSampler", "TaskSampler"),
    "metalearn.task": ("Task", "TaskError"),
    "metalearn.trainer": ("DivergedError", "Interrupted", "MetaTrainer", "TrainerConfig", "mse_loss"),
}
__all__ = [
    "ALGORITHMS",
    "DivergedError",
    "FactoryTaskSampler",
    "Interrupted",
    "MAML",
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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
