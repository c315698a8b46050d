"""The one training loop, as a package with a file per job:

| module | its job |
|---|---|
| `config.py` | `TrainerConfig` (checked when built) and `resolve_device` |
| `trainer.py` | `MetaTrainer`: the trainer object and one meta-iteration, phase by phase (`step`) |
| `meta_batch.py` | a meta-batch's results summed as they arrive (one task's meta-gradient alive at a time) |
| `loop.py` | `fit`: run folders claimed and locked, resume, then step, log and checkpoint |
| `checkpoints.py` | `Checkpointer`: what a checkpoint holds, writing it, resuming from it exactly |
| `signals.py` | SIGINT/SIGTERM recorded and acted on between iterations |
| `errors.py` | `DivergedError`, `Interrupted` |
"""

from metalearn.losses import mse_loss
from metalearn.trainer.checkpoints import (
    CHECKPOINT_FILE,
    CHECKPOINT_KEYS,
    CONFIG_FILE,
    MODEL_FILE,
    RUN_FILE_NAMES,
    RUN_FILES,
    Checkpointer,
)
from metalearn.trainer.config import NON_MATHS_FIELDS, TrainerConfig, resolve_device
from metalearn.trainer.errors import DivergedError, Interrupted
from metalearn.trainer.trainer import MetaTrainer, OptimizerFactory

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_KEYS",
    "CONFIG_FILE",
    "MODEL_FILE",
    "NON_MATHS_FIELDS",
    "RUN_FILES",
    "RUN_FILE_NAMES",
    "Checkpointer",
    "DivergedError",
    "Interrupted",
    "MetaTrainer",
    "OptimizerFactory",
    "TrainerConfig",
    "mse_loss",
    "resolve_device",
]
