"""`MetaTrainer`: one outer loop for every algorithm (sample tasks, average meta-gradients, step, log, save).

This module holds the trainer object and one meta-iteration, phase by phase (`step`); the loop around it
is `loop.py`, summing a meta-batch `meta_batch.py`, its state on disk `checkpoints.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metalearn.algorithms import MetaAlgorithm, get_algorithm
from metalearn.algorithms.base import LossFn, MetaResult, algorithm_key, freeze_batchnorm
from metalearn.checkpoint import first_nonfinite
from metalearn.distributed import all_reduce_sum, broadcast_module, rank_and_world
from metalearn.losses import mse_loss
from metalearn.sampler import TaskSampler
from metalearn.task import Task, TaskData
from metalearn.trainer import loop
from metalearn.trainer.checkpoints import Checkpointer, rank_seed
from metalearn.trainer.config import TrainerConfig, resolve_device
from metalearn.trainer.errors import DivergedError, StepAbandoned
from metalearn.trainer.meta_batch import MetaBatchSums, finite_flag, sum_results
from metalearn.trainer.signals import StopRequests

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


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
        self.checkpoints = Checkpointer(self)
        self.rank, self.world = rank_and_world()
        broadcast_module(self.model)
        if self.world > 1:  # each rank draws dropout from a stream of its own, not from a copy of rank 0's
            torch.manual_seed(rank_seed(self.config.seed, self.rank))
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

    def step(self, stops: StopRequests | None = None) -> dict[str, float]:
        """One outer iteration; returns the logged metrics. Each phase is one method, in this order.

        With `stops` (what `fit` passes), a stop request that arrives between two tasks abandons the step
        when it can be replayed exactly (`_can_abandon`): the random streams are put back and
        `StepAbandoned` is raised, so a long iteration does not hold a stop up.
        """
        start = time.perf_counter()
        replay = self._replay_point() if stops is not None and self._can_abandon() else None
        tasks = self._sample_tasks()
        try:
            sums = self._meta_gradients(tasks, stops if replay is not None else None)
        except StepAbandoned:
            assert replay is not None
            self.generator.set_state(replay[0])
            torch.set_rng_state(replay[1])
            raise
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

    def _can_abandon(self) -> bool:
        """Whether a step cut short between tasks leaves nothing behind but its random draws: one process
        (ranks must reach the all-reduce together), an algorithm and a sampler that carry no state from
        task to task, and no outer optimizer still to build from the first tasks (Meta-SGD)."""
        return (
            self.world == 1
            and not self.algorithm.carries_state_between_tasks
            and not hasattr(self.sampler, "state_dict")
            and self.optimizer is not None
        )

    def _replay_point(self) -> tuple[Tensor, Tensor]:
        """The task generator's and torch's global stream's states (small tensors), to replay a step."""
        return self.generator.get_state(), torch.get_rng_state()

    def _meta_gradients(self, tasks: list[Task], stops: StopRequests | None = None) -> MetaBatchSums:
        """This rank's tasks (every `world`-th from `rank`) through the algorithm, their results summed;
        with `stops`, `StepAbandoned` is raised between two tasks once a stop is requested."""
        self.model.train()
        if self.config.freeze_batchnorm:
            freeze_batchnorm(self.model)
        mine = list(range(self.rank, len(tasks), self.world))
        with self._autocast():  # the tasks run as their results are summed, so both happen in here
            results = self.algorithm.meta_steps(self.model, [tasks[i] for i in mine], self.loss_fn)
            if stops is not None:
                results = _until_stopped(results, len(mine), stops)
            if self.optimizer is None:  # lazily created meta-parameters (Meta-SGD) exist once the tasks ran
                results = list(results)
                self._build_optimizer()
            if self._float_buffers is None:
                self._float_buffers = {n: b for n, b in self.model.named_buffers() if b.is_floating_point()}
            return sum_results(results, mine, len(tasks), self._params, self._float_buffers, self.device)

    def _all_reduce(self, sums: MetaBatchSums) -> None:
        """Sum gradients, buffers, losses and faults over ranks (one flat all-reduce; nothing in one process)."""
        if self.world == 1:
            return
        gradients = [sums.gradient[n] for n in self._params]
        buffers = list(sums.buffers.values())
        all_reduce_sum(gradients + buffers + [sums.loss, sums.faults])

    def _set_mean_gradient(self, sums: MetaBatchSums) -> None:
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

    def _average_batchnorm(self, sums: MetaBatchSums) -> None:
        """With `bn_stats="average"`, the meta-model's float buffers become the adapted copies' mean."""
        if self.config.bn_stats != "average" or not self._float_buffers:
            return
        with torch.no_grad():
            names = list(sums.buffers)
            torch._foreach_mul_([sums.buffers[n] for n in names], 1.0 / self.config.tasks_per_batch)
            for name in names:
                self._float_buffers[name].copy_(sums.buffers[name])

    def _metrics(self, sums: MetaBatchSums, elapsed: float) -> dict[str, float]:
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
        if bool(finite_flag(list(self._params.values()), self.device)):
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
    def adapt(self, data: TaskData, steps: int | None = None) -> nn.Module:
        """A copy of the meta-trained model fine-tuned on `data` by the algorithm's own inner loop."""
        return self.algorithm.adapt(self.model, data, self.loss_fn, steps)

    # -- the loop and the run folder (loop.py, checkpoints.py) -------------------------------------
    def fit(
        self,
        iterations: int,
        checkpoint_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        resume: bool = False,
        callback: Callable[[dict[str, float]], None] | None = None,
        overwrite: bool = False,
    ) -> list[dict[str, float]]:
        """Train until `iterations` outer steps in total; see `metalearn.trainer.loop.fit`."""
        return loop.fit(self, iterations, checkpoint_dir, log_dir, resume, callback, overwrite)

    def settings(self) -> dict[str, Any]:
        """What a checkpoint must share with this trainer to be resumed by it (see `Checkpointer`)."""
        return self.checkpoints.settings()

    def check_settings(self, stored: Mapping[str, Any], directory: str | Path) -> None:
        """Refuse a checkpoint trained with other settings, listing each difference (`old -> new`)."""
        self.checkpoints.check_settings(stored, directory)

    def state_dict(self) -> dict[str, Any]:
        """The full training state, every random stream included."""
        return self.checkpoints.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.checkpoints.load_state_dict(state)

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write `checkpoint.pt`, `model.pt` and `config.json` into `directory` (see `Checkpointer.save`)."""
        return self.checkpoints.save(directory)

    def load_checkpoint(self, directory: str | Path) -> None:
        """Restore the training state saved in `directory` (see `Checkpointer.load`)."""
        self.checkpoints.load(directory)


def _until_stopped(results: Iterable[MetaResult], count: int, stops: StopRequests) -> Iterator[MetaResult]:
    """`results`, but `StepAbandoned` before a task (after the first) starts once a stop is requested."""
    iterator = iter(results)
    for index in range(count):
        if index and stops:
            raise StepAbandoned
        yield next(iterator)
