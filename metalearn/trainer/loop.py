"""The outer loop: claim and lock the run folders, resume, then step, log and checkpoint until the budget.

`MetaTrainer.fit` calls `fit(trainer, ...)`. Its shape follows nanoGPT's train loop (one flat `while` over
iterations, logging and checkpointing by modulo) rather than Lightning's loop objects: one loop serves
every algorithm, so there is nothing to plug in here.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from metalearn.distributed import agreed_signal, on_main
from metalearn.logger import TENSORBOARD_DIR, MetricsLogger
from metalearn.runs import ResumeMismatchError, check_run_mode, open_run
from metalearn.trainer.checkpoints import CHECKPOINT_FILE, RUN_FILE_NAMES
from metalearn.trainer.errors import DivergedError, Interrupted, StepAbandoned
from metalearn.trainer.signals import StopRequests, stop_requests

if TYPE_CHECKING:
    from metalearn.trainer.trainer import MetaTrainer


def fit(
    trainer: MetaTrainer,
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

    SIGINT or SIGTERM (main thread) stops training at the next safe point: the end of the current
    iteration, or (one process, an algorithm that carries no state between tasks) the end of the current
    task, the iteration then being abandoned and replayed on resume. A checkpoint is saved to
    `checkpoint_dir` and `Interrupted` raised. A second signal meanwhile raises `ForcedStop` at once (no
    new checkpoint; the files on disk stay whole). The previous signal handlers are restored when `fit`
    returns. Under `torchrun` every rank stops at the same iteration, and rank 0 alone locks, logs and
    writes.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError(f"iterations must be a whole number of outer steps, got {iterations!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    check_run_mode(resume, overwrite)  # even without a folder: the two exclude each other
    with contextlib.ExitStack() as stack:
        stops = stack.enter_context(stop_requests())
        for folder in _distinct_folders(checkpoint_dir, log_dir):  # under torchrun: rank 0's, shared
            continuing = resume or (not overwrite and folder.resolve() in trainer._run_dirs)
            stack.enter_context(
                open_run(folder, RUN_FILE_NAMES, (TENSORBOARD_DIR,), resume=continuing, overwrite=overwrite)
            )
        if (
            resume
            and checkpoint_dir is not None
            and on_main((Path(checkpoint_dir) / CHECKPOINT_FILE).is_file)
        ):
            trainer.load_checkpoint(checkpoint_dir)
            if trainer.iteration > iterations:
                raise ResumeMismatchError(
                    f"{checkpoint_dir}: the checkpoint has done {trainer.iteration} iterations, more than the "
                    f"{iterations} asked for; resume with a budget of at least {trainer.iteration}",
                    checkpoint_dir,
                )
        return _loop(trainer, iterations, checkpoint_dir, log_dir, callback, stops)


def _loop(
    trainer: MetaTrainer,
    iterations: int,
    checkpoint_dir: str | Path | None,
    log_dir: str | Path | None,
    callback: Callable[[dict[str, float]], None] | None,
    stops: StopRequests | None = None,
) -> list[dict[str, float]]:
    """Step, log and checkpoint until `iterations` (the folders are already claimed and locked)."""
    main_process = trainer.rank == 0
    log_folder = log_dir or checkpoint_dir
    logger = MetricsLogger(log_folder) if main_process and log_folder else None
    if logger is not None:
        logger.truncate_after(trainer.iteration)
    rows = []
    bar = tqdm(
        total=iterations,
        initial=trainer.iteration,
        desc=f"meta-train [{trainer.algorithm.name}]",
        disable=not (trainer.config.progress and main_process),
        dynamic_ncols=True,
    )
    stops = StopRequests() if stops is None else stops
    try:
        while trainer.iteration < iterations:
            signum = agreed_signal(stops.received)  # under torchrun: the same answer on every rank
            if signum:
                _stop(trainer, signum, checkpoint_dir)
            try:
                row = trainer.step(stops)
            except StepAbandoned:  # a stop request mid-step: the state is the last iteration's again
                _stop(trainer, stops.first, checkpoint_dir)
            rows.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tasks_s=f"{row['tasks_per_s']:.1f}")
            if logger is not None:
                logger.log(row)
            if callback is not None:
                callback(row)
            every = trainer.config.checkpoint_every
            if checkpoint_dir is not None and every and trainer.iteration % every == 0:
                trainer.save_checkpoint(checkpoint_dir)
    except DivergedError as exc:
        if checkpoint_dir is None:
            raise
        raise DivergedError(f"{exc}; {_kept(trainer, checkpoint_dir)}", exc.iteration, exc.task) from None
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if checkpoint_dir is not None:
        trainer.save_checkpoint(checkpoint_dir)
    return rows


def _stop(trainer: MetaTrainer, signum: int, checkpoint_dir: str | Path | None) -> None:
    """Save the state reached (with a checkpoint folder) and raise `Interrupted`."""
    name = signal.Signals(signum).name
    saved = None
    if checkpoint_dir is not None:
        saved = trainer.save_checkpoint(checkpoint_dir)
    where = (
        f"checkpoint at iteration {trainer.iteration} saved in {saved}" if saved else "no checkpoint saved"
    )
    raise Interrupted(f"interrupted by {name}; {where}", signum, trainer.iteration, saved)


def _kept(trainer: MetaTrainer, directory: str | Path) -> str:
    """Which checkpoint in `directory` survives a divergence (this run saved or resumed from it)."""
    if trainer.saved_iteration is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
        return f"no checkpoint written to {directory}"
    return f"last finite checkpoint: iteration {trainer.saved_iteration} in {directory}"


def _distinct_folders(*folders: str | Path | None) -> list[Path]:
    """The given folders without `None`s and repeats, in order."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        if folder is not None:
            seen.setdefault(Path(folder).resolve(), Path(folder))
    return list(seen.values())
