"""A trainer's state on disk: what a checkpoint holds, writing it, and resuming from it exactly.

`Checkpointer` is the trainer's connector to its run folder (in the manner of PyTorch Lightning's
checkpoint connector): `MetaTrainer.save_checkpoint`, `load_checkpoint`, `state_dict`, `settings`... call it.
A checkpoint holds every random stream (the task generator, torch's global streams, under `torchrun` every
rank's), so a resumed run ends with the weights an uninterrupted one would have.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from metalearn.checkpoint import first_nonfinite, load_json, load_state, save_json, save_state
from metalearn.distributed import all_gather_objects, on_main
from metalearn.logger import METRICS_FILE, TENSORBOARD_DIR
from metalearn.runs import ResumeMismatchError, settings_diff
from metalearn.trainer.config import NON_MATHS_FIELDS
from metalearn.trainer.errors import DivergedError

if TYPE_CHECKING:
    from metalearn.trainer.trainer import MetaTrainer

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
RUN_FILES = (CHECKPOINT_FILE, MODEL_FILE, CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR)
"""What a run writes into its checkpoint (and log) folder: what `overwrite=True` may delete."""
RUN_FILE_NAMES = tuple(name for name in RUN_FILES if name != TENSORBOARD_DIR)
"""Of those, the ones written as files (a folder in their place is refused before training)."""
CHECKPOINT_KEYS = ("iteration", "model", "optimizer", "scheduler", "generator", "algorithm")
"""What `load` needs in `checkpoint.pt` (`rng` and `sampler` are optional: older checkpoints)."""


class Checkpointer:
    """Reads and writes one trainer's full state (see the module docstring)."""

    def __init__(self, trainer: MetaTrainer) -> None:
        self.trainer = trainer

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this trainer to be resumed by it: all but budget and display.

        The algorithm's `inner_lr` is its starting rate (the schedule decays the live one).
        """
        algorithm = dict(self.trainer.algorithm.config())
        if self.trainer._base_inner_lr is not None and "inner_lr" in algorithm:
            algorithm["inner_lr"] = self.trainer._base_inner_lr
        trainer = {k: v for k, v in asdict(self.trainer.config).items() if k not in NON_MATHS_FIELDS}
        settings = {
            "run": self.trainer.run_config,
            "algorithm": algorithm,
            "trainer": trainer,
            "model_class": type(self.trainer.model).__name__,
        }
        return json.loads(json.dumps(settings, default=str))  # as the JSON file will hold it

    def check_settings(self, stored: Mapping[str, Any], directory: str | Path) -> None:
        """Refuse a checkpoint trained with other settings, listing each difference (`old -> new`)."""
        current = self.settings()
        diffs = settings_diff(stored.get("run", {}), current["run"])
        old_algorithm, new_algorithm = stored.get("algorithm", {}), current["algorithm"]
        if old_algorithm.get("name") != new_algorithm.get("name"):  # the other keys are another algorithm's
            old_algorithm = {"name": old_algorithm.get("name")}
            new_algorithm = {"name": new_algorithm["name"]}
        diffs += settings_diff(old_algorithm, new_algorithm, "algorithm.")
        diffs += settings_diff(stored.get("trainer", {}), current["trainer"], "trainer.")
        if stored.get("model_class", current["model_class"]) != current["model_class"]:
            diffs.append(f"model class: {stored['model_class']!r} -> {current['model_class']!r}")
        if diffs:
            raise ResumeMismatchError(
                f"{directory}: cannot resume, the checkpoint was trained with other settings "
                f"({'; '.join(diffs)}); only the budget may change",
                directory,
            )

    def state_dict(self) -> dict[str, Any]:
        """The full training state, every random stream included (dropout draws from torch's global one)."""
        state = {
            "iteration": self.trainer.iteration,
            "model": self.trainer.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict() if self.trainer.optimizer else None,
            "scheduler": self.trainer.scheduler.state_dict() if self.trainer.scheduler else None,
            "generator": self.trainer.generator.get_state(),
            "algorithm": self.trainer.algorithm.state_dict(),
            "rng": rng_state(),
        }
        if hasattr(self.trainer.sampler, "state_dict"):  # a sampler that keeps its own random stream
            state["sampler"] = self.trainer.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.trainer.model.load_state_dict(state["model"])
        except RuntimeError as exc:  # another architecture: say so in one line, not PyTorch's key list
            first = str(exc).splitlines()[0].rstrip(":")
            raise ResumeMismatchError(
                f"the checkpoint's model does not fit this one ({first})", "."
            ) from None
        self.trainer.algorithm.load_state_dict(state["algorithm"])
        if state["optimizer"] is not None:
            if self.trainer.optimizer is None:
                self.trainer._build_optimizer()
            assert self.trainer.optimizer is not None
            self.trainer.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and self.trainer.scheduler is not None:
            self.trainer.scheduler.load_state_dict(state["scheduler"])
        self.trainer.generator.set_state(state["generator"].cpu())
        _restore_rng(state.get("rng", {}))
        per_rank = state.get("rng_ranks")  # saved under torchrun: each rank's own streams
        if per_rank and len(per_rank) == self.trainer.world:
            _restore_rng(per_rank[self.trainer.rank])
        if "sampler" in state and hasattr(self.trainer.sampler, "load_state_dict"):
            self.trainer.sampler.load_state_dict(state["sampler"])
        self.trainer.iteration = int(state["iteration"])
        self.trainer._sync_inner_lr()

    def save(self, directory: str | Path) -> Path:
        """Write `checkpoint.pt` (full training state), `model.pt` (weights only) and `config.json`.

        Raises `DivergedError`, writing nothing, if a weight is not finite. Under `torchrun` every rank
        calls it and rank 0 writes (the others wait for it, and fail with it).
        """
        name = self.trainer._nonfinite_weight()
        if name is not None:
            raise DivergedError(
                f"refusing to save a checkpoint at iteration {self.trainer.iteration}: non-finite weights in {name}",
                self.trainer.iteration,
            )
        directory = Path(directory)
        streams = all_gather_objects(rng_state())  # under torchrun: every rank's, for an exact resume
        on_main(self._write, directory, streams)
        self.trainer.saved_iteration = self.trainer.iteration
        self.trainer._run_dirs.add(directory.resolve())
        return directory

    def _write(self, directory: Path, streams: list[dict[str, Any]]) -> None:
        # config.json first and checkpoint.pt next: a kill between two writes never leaves a checkpoint
        # whose config is missing (only the settings, identical all run long, are read back from it).
        save_json(
            {
                "iteration": self.trainer.iteration,
                "algorithm": self.trainer.algorithm.config(),
                "trainer": asdict(self.trainer.config),
                "model_class": type(self.trainer.model).__name__,
                "settings": self.settings(),
            },
            directory / CONFIG_FILE,
        )
        state = self.state_dict()
        if len(streams) > 1:
            state["rng_ranks"] = streams
        save_state(state, directory / CHECKPOINT_FILE)
        save_state(state["model"], directory / MODEL_FILE)

    def load(self, directory: str | Path) -> None:
        """Restore the training state saved in `directory`, after checking it was trained like this run.
        A checkpoint with a NaN or an infinity in its weights is a ValueError. Under `torchrun` every rank
        calls it: rank 0 reads the files and sends them to the others, whose disks need not hold them."""
        directory = Path(directory)
        config = directory / CONFIG_FILE
        stored = on_main(load_json, config)  # fail early on a damaged config
        if not isinstance(stored, dict) or not isinstance(stored.get("settings", {}), dict):
            raise ValueError(f"{config}: not a metalearn checkpoint config (expected a JSON object)")
        if "settings" in stored:  # older checkpoints did not record them
            self.check_settings(stored["settings"], directory)
        path = directory / CHECKPOINT_FILE
        if self.trainer.world == 1:
            state = load_state(path, map_location=self.trainer.device)
        else:  # sent through the CPU, then onto this rank's device
            state = _to_device(on_main(load_state, path, map_location="cpu"), self.trainer.device)
        missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            raise ValueError(f"{path}: not a metalearn training checkpoint (no {', '.join(missing)})")
        name = first_nonfinite({"model": state["model"], "algorithm": state["algorithm"]})
        if name is not None:
            raise ValueError(f"{path}: non-finite weights in {name} (saved by a diverged run?)")
        try:
            self.load_state_dict(state)
        except ResumeMismatchError as exc:
            raise ResumeMismatchError(f"{directory}: {exc}", directory) from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            # a damaged or hand-edited dictionary: name the file, not PyTorch's internals
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise ValueError(f"{path}: malformed checkpoint ({exc.__class__.__name__}: {reason})") from None
        self.trainer.saved_iteration = self.trainer.iteration
        self.trainer._run_dirs.add(directory.resolve())


def rng_state() -> dict[str, Any]:
    """torch's global random streams in this process (CPU, and CUDA once it is in use)."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def rank_seed(seed: int, rank: int) -> int:
    """A seed of rank `rank`'s own for torch's global stream, derived from the run's `seed`."""
    return int(torch.randint(2**62, (rank + 1,), generator=torch.Generator().manual_seed(seed))[-1])


def _restore_rng(rng: Mapping[str, Any]) -> None:
    """Put torch's global random streams back where a checkpoint left them (CUDA's when both have them)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    cuda = rng.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _to_device(state: Any, device: torch.device) -> Any:
    """`state` with every tensor moved to `device`, as `torch.load(map_location=device)` would."""
    if isinstance(state, Tensor):
        return state.to(device)
    if isinstance(state, Mapping):
        return {k: _to_device(v, device) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_device(v, device) for v in state)
    return state
