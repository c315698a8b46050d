"""metalearn: task abstractions, pluggable meta-learning algorithms and one shared training loop.

The public names below are imported on first use (PEP 562), so that `import metalearn` (and the
`metalearn --help` command) costs no torch import until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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
assert sorted(__all__) == sorted(_MODULE_OF), "__all__ and _EXPORTS must name the same things"


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'metalearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
