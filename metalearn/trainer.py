"""`MetaTrainer`: one outer loop for every algorithm (sample tasks, average meta-gradients, step, log, save)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from metalearn.algorithms import MetaAlgorithm, get_algorithm
from metalearn.algorithms.base import LossFn, MetaResult, algorithm_key, freeze_batchnorm
from metalearn.checkpoint import first_nonfinite, load_json, load_state, save_json, save_state
from metalearn.distributed import (
    agreed_signal,
    all_gather_objects,
    all_reduce_sum,
    broadcast_module,
    on_main,
    rank_and_world,
)
from metalearn.logger import METRICS_FILE, TENSORBOARD_DIR, MetricsLogger
from metalearn.runs import ResumeMismatchError, claim_run_dir, lock_run_dir, settings_diff
from metalearn.sampler import TaskSampler
from metalearn.task import Task, TaskData

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
RUN_FILES = (CHECKPOINT_FILE, MODEL_FILE, CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR)
"""What a run writes into its checkpoint (and log) folder: what `overwrite=True` may delete."""
RUN_FILE_NAMES = tuple(name for name in RUN_FILES if name != TENSORBOARD_DIR)
"""Of those, the ones written as files (a folder in their place is refused before training)."""
CHECKPOINT_KEYS = ("iteration", "model", "optimizer", "scheduler", "generator", "algorithm")
"""What `load_checkpoint` needs in `checkpoint.pt` (`rng` and `sampler` are optional: older checkpoints)."""
NON_MATHS_FIELDS = ("progress", "checkpoint_every")
"""`TrainerConfig` fields a resumed run may change: they do not change the weights."""


class DivergedError(RuntimeError):
    """Training met a NaN or an infinity (loss, meta-gradient or weights) and stopped before saving it.

    `iteration` is the outer iteration (1-based) that diverged; `task` its task's index in the meta-batch
    (1-based) when one task is to blame. Checkpoints written before it stay on disk, all finite.
    """

    def __init__(self, message: str, iteration: int, task: int | None = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.task = task


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training between two iterations (`signum`).

    `checkpoint` is the folder the state was saved to on the way out (None without a checkpoint folder):
    resuming from it ends with the same weights an uninterrupted run would have.
    """

    def __init__(self, message: str, signum: int, iteration: int, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM only record their number in the yielded list (checked
    between iterations, so no step is cut in half); the previous handlers come back afterwards.

    Signals can only be caught in the main thread: elsewhere nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class TrainerConfig:
    """Outer-loop settings. `lr_decay` multiplies the outer learning rate every `lr_decay_every` iterations.

    `outer_optimizer` is `"adam"` (default) or `"sgd"` (plain gradient descent, no momentum: the outer
    step theta <- theta - outer_lr * mean meta-gradient as MetaIQA's Eq. (8) writes it). With
    `decay_inner_lr`, the algorithm's `inner_lr` follows the same schedule as the outer rate.

    `bn_stats` says what happens to BatchNorm running statistics, which no meta-gradient carries:
    `"average"` (default) sets the meta-model's buffers to the mean of the adapted copies' buffers over the
    meta-batch, so evaluation-mode statistics follow the data the model trains on; `"keep"` leaves the
    meta-model's buffers untouched (what MetaIQA's public code does in effect).

    `freeze_batchnorm` runs every BatchNorm layer in evaluation mode during training (normalising with its
    running statistics, which then stay fixed; its affine weights still learn). Tasks whose batches all
    come from one distortion type need it: in training mode BatchNorm subtracts each batch's own mean, so
    the network cannot learn how the types' quality levels compare (measured in docs/results.md).
    """

    tasks_per_batch: int = 5
    outer_lr: float = 1e-3
    outer_optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    lr_decay_every: int = 0
    decay_inner_lr: bool = False
    grad_clip: float | None = None
    bn_stats: Literal["average", "keep"] = "average"
    freeze_batchnorm: bool = False
    seed: int = 0
    amp: bool = True
    checkpoint_every: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.tasks_per_batch < 1:
            raise ValueError(f"tasks_per_batch must be at least 1, got {self.tasks_per_batch}")
        if self.outer_optimizer not in ("adam", "sgd"):
            raise ValueError(f"outer_optimizer must be 'adam' or 'sgd', got {self.outer_optimizer!r}")
        if self.bn_stats not in ("average", "keep"):
            raise ValueError(f"bn_stats must be 'average' or 'keep', got {self.bn_stats!r}")
        if self.lr_decay_every < 0 or self.checkpoint_every < 0:
            raise ValueError("lr_decay_every and checkpoint_every must be >= 0")


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` means CUDA when present, else CPU; a device this machine lacks is a `ValueError` up front."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA GPU is available here (use cpu or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(
                f"device {str(device)!r}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available here (use cpu or auto)")
    return resolved


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error with predictions and targets flattened to the same shape."""
    return torch.nn.functional.mse_loss(pred.reshape(target.shape), target)


class MetaTrainer:
    """Meta-trains `model` with any `MetaAlgorithm`: the same loop, logging and checkpoints for all of them.

    Each iteration samples `tasks_per_batch` tasks with the trainer's own `torch.Generator`, averages their
    meta-gradients (over processes too under `torchrun`: every rank samples the same meta-batch and works on
    its share), writes the mean into `.grad` and steps one outer optimizer.

    `run_config` holds the settings outside the trainer that shape the run (the data, the network's
    architecture...): stored with each checkpoint and compared, like the trainer's own, on resume.
    """

    def __init__(
        self,
        model: nn.Module,
        algorithm: MetaAlgorithm | str,
        sampler: TaskSampler,
        loss_fn: LossFn = mse_loss,
        outer_optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        tasks_per_batch: int | None = None,
        device: str | torch.device = "auto",
        config: TrainerConfig | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        # a copy: the caller's config object is never changed (tasks_per_batch, progress...)
        self.config = dataclasses.replace(config) if config is not None else TrainerConfig()
        self.run_config = dict(run_config or {})
        if tasks_per_batch is not None:
            self.config.tasks_per_batch = tasks_per_batch
        self.config.validate()
        if sampler is None:  # typed as required; untyped callers still get a one-line error
            raise ValueError("MetaTrainer needs a task sampler")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.algorithm = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
        self.sampler = sampler
        self.loss_fn = loss_fn
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._base_inner_lr: float | None = getattr(self.algorithm, "inner_lr", None)
        self.iteration = 0
        self.saved_iteration: int | None = None  # the iteration of the last checkpoint saved or loaded
        self._run_dirs: set[Path] = set()  # folders whose checkpoint is this trainer's current state
        self.rank, self.world = rank_and_world()
        broadcast_module(self.model)
        if self.world > 1:  # each rank draws dropout from a stream of its own, not from a copy of rank 0's
            torch.manual_seed(_rank_seed(self.config.seed, self.rank))
        self._outer_spec = outer_optimizer
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._params: dict[
            str, nn.Parameter
        ] = {}  # the meta-parameters the optimizer steps, fixed once built
        self._float_buffers: dict[str, Tensor] | None = None  # what BatchNorm averaging writes (first step)
        if outer_optimizer is not None or not self._needs_lazy_optimizer():
            self._build_optimizer()

    # -- optimizer ---------------------------------------------------------------------------------
    def _needs_lazy_optimizer(self) -> bool:
        """Algorithms such as Meta-SGD create their meta-parameters on first use."""
        return self.algorithm.creates_parameters_lazily and not self.algorithm.extra_parameters()

    def _meta_parameters(self) -> dict[str, nn.Parameter]:
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        params.update({algorithm_key(n): p for n, p in self.algorithm.extra_parameters().items()})
        return params

    def _build_optimizer(self) -> None:
        self._params = self._meta_parameters()
        params = list(self._params.values())
        spec = self._outer_spec
        if spec is None and self.config.outer_optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params, lr=self.config.outer_lr, weight_decay=self.config.weight_decay
            )
        elif spec is None:
            self.optimizer = torch.optim.Adam(
                params, lr=self.config.outer_lr, weight_decay=self.config.weight_decay
            )
        elif isinstance(spec, torch.optim.Optimizer):
            self.optimizer = spec
        else:
            self.optimizer = spec(params)
        if self.config.lr_decay_every:
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=self.config.lr_decay_every, gamma=self.config.lr_decay
            )

    # -- one meta-iteration ------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> dict[str, float]:
        """One outer iteration; returns the logged metrics. Each phase is one method, in this order."""
        start = time.perf_counter()
        tasks = self._sample_tasks()
        sums = self._meta_gradients(tasks)  # this rank's share of the tasks, summed
        self._all_reduce(sums)  # every rank now holds the sums over all tasks
        if sums.faulty or self.world > 1:  # before the step: the model keeps its last finite weights
            self._check_faults(sums.faults)
        self._set_mean_gradient(sums)
        self._clip_gradient()
        self._outer_step()
        self._average_batchnorm(sums)
        self._check_weights(self.iteration + 1)
        self.iteration += 1
        return self._metrics(sums, time.perf_counter() - start)

    def _sample_tasks(self) -> list[Task]:
        """The meta-batch, drawn from the trainer's own generator (the same on every rank)."""
        tasks = self.sampler.sample(self.config.tasks_per_batch, self.generator)
        if len(tasks) != self.config.tasks_per_batch:
            raise ValueError(f"sampler returned {len(tasks)} tasks, expected {self.config.tasks_per_batch}")
        return tasks

    def _meta_gradients(self, tasks: list[Task]) -> _Sums:
        """This rank's tasks (every `world`-th from `rank`) through the algorithm, their results summed."""
        self.model.train()
        if self.config.freeze_batchnorm:
            freeze_batchnorm(self.model)
        mine = list(range(self.rank, len(tasks), self.world))
        with self._autocast():  # the tasks run as their results are summed, so both happen in here
            results = self.algorithm.meta_steps(self.model, [tasks[i] for i in mine], self.loss_fn)
            if self.optimizer is None:  # lazily created meta-parameters (Meta-SGD) exist once the tasks ran
                results = list(results)
                self._build_optimizer()
            if self._float_buffers is None:
                self._float_buffers = {n: b for n, b in self.model.named_buffers() if b.is_floating_point()}
            return _sum_results(results, mine, len(tasks), self._params, self._float_buffers, self.device)

    def _all_reduce(self, sums: _Sums) -> None:
        """Sum gradients, buffers, losses and faults over ranks (one flat all-reduce; nothing in one process)."""
        if self.world == 1:
            return
        gradients = [sums.gradient[n] for n in self._params]
        buffers = list(sums.buffers.values())
        all_reduce_sum(gradients + buffers + [sums.loss, sums.faults])

    def _set_mean_gradient(self, sums: _Sums) -> None:
        """The mean meta-gradient over the meta-batch, written into each meta-parameter's `.grad` (the sum's
        own tensor, divided in place: no second parameter-sized copy)."""
        count = self.config.tasks_per_batch
        for name, param in self._params.items():
            param.grad = sums.gradient[name].div_(count).to(param.dtype)

    def _clip_gradient(self) -> None:
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(self._params.values()), self.config.grad_clip)

    def _outer_step(self) -> None:
        """One step of the outer optimizer, then the learning-rate schedule (and the inner rate with it)."""
        assert self.optimizer is not None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
            self._sync_inner_lr()

    def _average_batchnorm(self, sums: _Sums) -> None:
        """With `bn_stats="average"`, the meta-model's float buffers become the adapted copies' mean."""
        if self.config.bn_stats != "average" or not self._float_buffers:
            return
        with torch.no_grad():
            names = list(sums.buffers)
            torch._foreach_mul_([sums.buffers[n] for n in names], 1.0 / self.config.tasks_per_batch)
            for name in names:
                self._float_buffers[name].copy_(sums.buffers[name])

    def _metrics(self, sums: _Sums, elapsed: float) -> dict[str, float]:
        assert self.optimizer is not None
        count = self.config.tasks_per_batch
        return {
            "iteration": self.iteration,
            "loss": sums.loss.item() / count,
            "lr": self.optimizer.param_groups[0]["lr"],
            "tasks_per_s": count / elapsed,
            "seconds": elapsed,
        }

    def _check_faults(self, faults: Tensor) -> None:
        """Raise `DivergedError` naming the first task whose loss or meta-gradient was not finite."""
        bad = torch.nonzero(faults).flatten().tolist()
        if not bad:
            return
        index = int(bad[0])
        what = "loss" if int(faults[index]) == 1 else "meta-gradient"
        iteration = self.iteration + 1
        raise DivergedError(
            f"training diverged at iteration {iteration}, task {index + 1} of {faults.numel()}: non-finite "
            f"{what} (learning rate too high?)",
            iteration,
            index + 1,
        )

    def _nonfinite_weight(self) -> str | None:
        """The first model or algorithm weight (or buffer) holding a NaN or an infinity, else None."""
        return first_nonfinite(
            {"model": self.model.state_dict(), "algorithm": self.algorithm.extra_parameters()}
        )

    def _check_weights(self, iteration: int) -> None:
        """Raise `DivergedError` if the outer step left a weight that is not finite (one fused check; the
        name is looked up only on failure)."""
        if bool(_finite_flag(list(self._params.values()), self.device)):
            return
        name = self._nonfinite_weight()
        if name is not None:
            raise DivergedError(
                f"training diverged at iteration {iteration}: non-finite weights in {name} after the outer "
                "step (outer learning rate too high?)",
                iteration,
            )

    def _sync_inner_lr(self) -> None:
        """With `decay_inner_lr`, scale the algorithm's inner rate by the outer schedule's current factor."""
        if not self.config.decay_inner_lr or self._base_inner_lr is None or self.scheduler is None:
            return
        group = self.scheduler.optimizer.param_groups[0]
        self.algorithm.inner_lr = self._base_inner_lr * group["lr"] / group["initial_lr"]  # type: ignore[attr-defined]

    # -- the loop ----------------------------------------------------------------------------------
    def fit(
        self,
        iterations: int,
        checkpoint_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        resume: bool = False,
        callback: Callable[[dict[str, float]], None] | None = None,
        overwrite: bool = False,
    ) -> list[dict[str, float]]:
        """Run outer iterations until `iterations` in total (counting resumed ones); return this run's rows.

        With `resume=True` and a checkpoint in `checkpoint_dir`, training continues from it and ends with
        the same weights an uninterrupted run would have; its settings must match this trainer's, and
        `iterations` may not be fewer than it has done. Otherwise the folders must hold no previous run
        (`RunExistsError`) unless `overwrite=True` deletes it first. The folders are locked while training
        (`RunLockedError` for a second run on them).

        SIGINT or SIGTERM (main thread) ends the current iteration, saves a checkpoint to `checkpoint_dir`
        and raises `Interrupted`; the previous signal handlers are restored when `fit` returns. Under
        `torchrun` every rank stops at the same iteration, and rank 0 alone locks, logs and writes.
        """
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the run or replace it")
        with contextlib.ExitStack() as locks:
            stops = locks.enter_context(_stop_requests())
            for folder in _distinct_folders(checkpoint_dir, log_dir):  # under torchrun: rank 0's, shared
                locks.enter_context(lock_run_dir(folder))
                continuing = resume or (not overwrite and folder.resolve() in self._run_dirs)
                claim_run_dir(folder, RUN_FILES, resume=continuing, overwrite=overwrite, files=RUN_FILE_NAMES)
            if (
                resume
                and checkpoint_dir is not None
                and on_main((Path(checkpoint_dir) / CHECKPOINT_FILE).is_file)
            ):
                self.load_checkpoint(checkpoint_dir)
                if self.iteration > iterations:
                    raise ResumeMismatchError(
                        f"{checkpoint_dir}: the checkpoint has done {self.iteration} iterations, more than the "
                        f"{iterations} asked for; resume with a budget of at least {self.iteration}",
                        checkpoint_dir,
                    )
            return self._loop(iterations, checkpoint_dir, log_dir, callback, stops)

    def _loop(
        self,
        iterations: int,
        checkpoint_dir: str | Path | None,
        log_dir: str | Path | None,
        callback: Callable[[dict[str, float]], None] | None,
        stops: list[int] | None = None,
    ) -> list[dict[str, float]]:
        """Step, log and checkpoint until `iterations` (the folders are already claimed and locked)."""
        main_process = self.rank == 0
        log_folder = log_dir or checkpoint_dir
        logger = MetricsLogger(log_folder) if main_process and log_folder else None
        if logger is not None:
            logger.truncate_after(self.iteration)
        rows = []
        bar = tqdm(
            total=iterations,
            initial=self.iteration,
            desc=f"meta-train [{self.algorithm.name}]",
            disable=not (self.config.progress and main_process),
            dynamic_ncols=True,
        )
        stops = [] if stops is None else stops
        try:
            while self.iteration < iterations:
                signum = agreed_signal(stops)  # under torchrun: the same answer on every rank
                if signum:
                    self._stop(signum, checkpoint_dir)
                row = self.step()
                rows.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", tasks_s=f"{row['tasks_per_s']:.1f}")
                if logger is not None:
                    logger.log(row)
                if callback is not None:
                    callback(row)
                every = self.config.checkpoint_every
                if checkpoint_dir is not None and every and self.iteration % every == 0:
                    self.save_checkpoint(checkpoint_dir)
        except DivergedError as exc:
            if checkpoint_dir is None:
                raise
            raise DivergedError(f"{exc}; {self._kept(checkpoint_dir)}", exc.iteration, exc.task) from None
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        if checkpoint_dir is not None:
            self.save_checkpoint(checkpoint_dir)
        return rows

    def _stop(self, signum: int, checkpoint_dir: str | Path | None) -> None:
        """Save the state reached (with a checkpoint folder) and raise `Interrupted`."""
        name = signal.Signals(signum).name
        saved = None
        if checkpoint_dir is not None:
            saved = self.save_checkpoint(checkpoint_dir)
        where = (
            f"checkpoint at iteration {self.iteration} saved in {saved}" if saved else "no checkpoint saved"
        )
        raise Interrupted(f"interrupted by {name}; {where}", signum, self.iteration, saved)

    def _kept(self, directory: str | Path) -> str:
        """Which checkpoint in `directory` survives a divergence (this run saved or resumed from it)."""
        if self.saved_iteration is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
            return f"no checkpoint written to {directory}"
        return f"last finite checkpoint: iteration {self.saved_iteration} in {directory}"

    def adapt(self, data: TaskData, steps: int | None = None) -> nn.Module:
        """A copy of the meta-trained model fine-tuned on `data` by the algorithm's own inner loop."""
        return self.algorithm.adapt(self.model, data, self.loss_fn, steps)

    # -- checkpoints -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this trainer to be resumed by it: all but budget and display.

        The algorithm's `inner_lr` is its starting rate (the schedule decays the live one).
        """
        algorithm = dict(self.algorithm.config())
        if self._base_inner_lr is not None and "inner_lr" in algorithm:
            algorithm["inner_lr"] = self._base_inner_lr
        trainer = {k: v for k, v in asdict(self.config).items() if k not in NON_MATHS_FIELDS}
        settings = {
            "run": self.run_config,
            "algorithm": algorithm,
            "trainer": trainer,
            "model_class": type(self.model).__name__,
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
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "generator": self.generator.get_state(),
            "algorithm": self.algorithm.state_dict(),
            "rng": _rng_state(),
        }
        if hasattr(self.sampler, "state_dict"):  # a sampler that keeps its own random stream
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:  # another architecture: say so in one line, not PyTorch's key list
            first = str(exc).splitlines()[0].rstrip(":")
            raise ResumeMismatchError(
                f"the checkpoint's model does not fit this one ({first})", "."
            ) from None
        self.algorithm.load_state_dict(state["algorithm"])
        if state["optimizer"] is not None:
            if self.optimizer is None:
                self._build_optimizer()
            assert self.optimizer is not None
            self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        _restore_rng(state.get("rng", {}))
        per_rank = state.get("rng_ranks")  # saved under torchrun: each rank's own streams
        if per_rank and len(per_rank) == self.world:
            _restore_rng(per_rank[self.rank])
        if "sampler" in state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state["sampler"])
        self.iteration = int(state["iteration"])
        self._sync_inner_lr()

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write `checkpoint.pt` (full training state), `model.pt` (weights only) and `config.json`.

        Raises `DivergedError`, writing nothing, if a weight is not finite. Under `torchrun` every rank
        calls it and rank 0 writes (the others wait for it, and fail with it).
        """
        name = self._nonfinite_weight()
        if name is not None:
            raise DivergedError(
                f"refusing to save a checkpoint at iteration {self.iteration}: non-finite weights in {name}",
                self.iteration,
            )
        directory = Path(directory)
        streams = all_gather_objects(_rng_state())  # under torchrun: every rank's, for an exact resume
        on_main(self._write_checkpoint, directory, streams)
        self.saved_iteration = self.iteration
        self._run_dirs.add(directory.resolve())
        return directory

    def _write_checkpoint(self, directory: Path, streams: list[dict[str, Any]]) -> None:
        # config.json first and checkpoint.pt next: a kill between two writes never leaves a checkpoint
        # whose config is missing (only the settings, identical all run long, are read back from it).
        save_json(
            {
                "iteration": self.iteration,
                "algorithm": self.algorithm.config(),
                "trainer": asdict(self.config),
                "model_class": type(self.model).__name__,
                "settings": self.settings(),
            },
            directory / CONFIG_FILE,
        )
        state = self.state_dict()
        if len(streams) > 1:
            state["rng_ranks"] = streams
        save_state(state, directory / CHECKPOINT_FILE)
        save_state(state["model"], directory / MODEL_FILE)

    def load_checkpoint(self, directory: str | Path) -> None:
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
        if self.world == 1:
            state = load_state(path, map_location=self.device)
        else:  # sent through the CPU, then onto this rank's device
            state = _to_device(on_main(load_state, path, map_location="cpu"), self.device)
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
        self.saved_iteration = self.iteration
        self._run_dirs.add(directory.resolve())


def _rng_state() -> dict[str, Any]:
    """torch's global random streams in this process (CPU, and CUDA once it is in use)."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _rank_seed(seed: int, rank: int) -> int:
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


def _distinct_folders(*folders: str | Path | None) -> list[Path]:
    """The given folders without `None`s and repeats, in order."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        if folder is not None:
            seen.setdefault(Path(folder).resolve(), Path(folder))
    return list(seen.values())


@dataclass
class _Sums:
    """One rank's meta-batch, summed: gradients and float buffers by name, the query losses, and per task
    0 (finite), 1 (non-finite loss) or 2 (non-finite meta-gradient or buffers)."""

    gradient: dict[str, Tensor]
    buffers: dict[str, Tensor]
    loss: Tensor
    faults: Tensor
    faulty: bool
    """Whether this rank found a fault (so a single process reads `faults` back only then)."""


def _sum_results(
    results: Iterable[MetaResult],
    indices: list[int],
    count: int,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    device: torch.device,
) -> _Sums:
    """Sum the results in float32 (float64 kept) as they arrive, one fused add per task, so a meta-batch
    holds one task's meta-gradient at a time, not T of them; zeros where a rank had no task or a task no
    entry, so every rank sends the same list to the all-reduce. Each task's finiteness is noted on the
    device as it passes (no sync); it is read back once, for the whole meta-batch."""
    gradient = _NamedSum(params)
    buffer_sum = _NamedSum(buffers)
    losses: list[float] = []
    finite: list[Tensor] = []
    for result in results:
        gradient.add(result.gradient)
        buffer_sum.add(result.buffers)
        losses.append(result.loss)
        finite.append(
            _finite_flag([*gradient.entries(result.gradient), *buffer_sum.entries(result.buffers)], device)
        )
        del result  # the next task runs while the loop variable would still hold this one
    flags = torch.stack(finite) if finite else torch.ones(0, dtype=torch.bool, device=device)
    faulty = not (all(math.isfinite(x) for x in losses) and bool(flags.all()))
    faults = torch.zeros(count, device=device)
    if faulty:  # something is off: say which task (1: its loss, 2: its meta-gradient or buffers)
        for index, task_loss, ok in zip(indices, losses, flags.tolist()):
            faults[index] = 1.0 if not math.isfinite(task_loss) else (0.0 if ok else 2.0)
    loss = torch.tensor([sum(losses)], dtype=torch.float32, device=device)
    return _Sums(gradient.totals(), buffer_sum.totals(), loss, faults, faulty)


class _NamedSum:
    """A running sum of named tensors over tasks, in the reference's names and order (zeros where absent)."""

    def __init__(self, reference: Mapping[str, Tensor]) -> None:
        self._reference = reference
        self._names = list(reference)
        self._totals: list[Tensor] | None = None

    def entries(self, entry: Mapping[str, Tensor]) -> list[Tensor]:
        """The tensors of `entry` this sum takes (those named in the reference)."""
        return [entry[n] for n in self._names if n in entry]

    def add(self, entry: Mapping[str, Tensor]) -> None:
        if self._totals is None:  # the first task's values, copied: an algorithm may reuse its buffers
            self._totals = [
                entry[n].detach().to(_sum_dtype(entry[n]), copy=True) if n in entry else self._zeros(n)
                for n in self._names
            ]
            return
        present = [(t, entry[n].detach()) for t, n in zip(self._totals, self._names) if n in entry]
        if present:
            torch._foreach_add_([t for t, _ in present], [v for _, v in present])

    def totals(self) -> dict[str, Tensor]:
        totals = self._totals if self._totals is not None else [self._zeros(n) for n in self._names]
        return dict(zip(self._names, totals))

    def _zeros(self, name: str) -> Tensor:
        return torch.zeros_like(self._reference[name], dtype=_sum_dtype(self._reference[name]))


def _sum_dtype(tensor: Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)  # keep float64 exact, lift bf16


def _finite_flag(tensors: list[Tensor], device: torch.device) -> Tensor:
    """A device bool: True when no tensor holds a NaN or an infinity (their max-norms are finite: NaN
    propagates, and no finite value overflows). One fused pass, no sync."""
    if not tensors:
        return torch.ones((), dtype=torch.bool, device=device)
    norms = torch._foreach_norm([t.detach() for t in tensors], float("inf"))
    return torch.stack([n.to(device) for n in norms]).isfinite().all()
