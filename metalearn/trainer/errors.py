"""How training ends early: divergence (a NaN or an infinity) and a stop signal."""

from __future__ import annotations

from pathlib import Path


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


class StepAbandoned(Exception):
    """Internal: a stop request arrived between two tasks and the step was abandoned, its random streams
    put back, so the trainer's state is the previous iteration's (the loop then stops as between steps)."""
