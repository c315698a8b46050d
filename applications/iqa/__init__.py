"""metalearn_iqa: no-reference image quality assessment on top of the metalearn core (MetaIQA, QPT).

The package by concern: `data` (databases), `images` (pixels), `model` (the network and its files),
`training` (tasks, priors, fine-tuning), `evaluation` (scores, metrics), `protocols` (LODO, cross-database,
the demo), `qpt` (label-free pre-training), `cli` (`metalearn iqa ...`). The names below are imported on
first use (PEP 562), so that `import metalearn_iqa` (and `metalearn iqa --help`) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalearn.lazy import lazy_exports

if TYPE_CHECKING:
    from metalearn_iqa.evaluation.predict import EvalConfig, evaluate_records, predict_records
    from metalearn_iqa.model.network import IQANet, ModelConfig
    from metalearn_iqa.model.weights import build_model, load_model, save_model
    from metalearn_iqa.training.algorithms import build_algorithm
    from metalearn_iqa.training.finetune import FinetuneConfig, finetune
    from metalearn_iqa.training.prior import PriorConfig, load_prior, prior_trainer, train_prior
    from metalearn_iqa.training.tasks import TaskConfig

__version__ = "0.1.0"

_EXPORTS = {
    "metalearn_iqa.evaluation.predict": ("EvalConfig", "evaluate_records", "predict_records"),
    "metalearn_iqa.model.network": ("IQANet", "ModelConfig"),
    "metalearn_iqa.model.weights": ("build_model", "load_model", "save_model"),
    "metalearn_iqa.training.algorithms": ("build_algorithm",),
    "metalearn_iqa.training.finetune": ("FinetuneConfig", "finetune"),
    "metalearn_iqa.training.prior": ("PriorConfig", "load_prior", "prior_trainer", "train_prior"),
    "metalearn_iqa.training.tasks": ("TaskConfig",),
}
__all__ = [
    "EvalConfig",
    "FinetuneConfig",
    "IQANet",
    "ModelConfig",
    "PriorConfig",
    "TaskConfig",
    "build_algorithm",
    "build_model",
    "evaluate_records",
    "finetune",
    "load_model",
    "load_prior",
    "predict_records",
    "prior_trainer",
    "save_model",
    "train_prior",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
