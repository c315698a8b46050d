"""One-line CLI errors for every command group: bad input exits 2, an interrupted run 128 + the signal's
number, never a traceback. An application adds its own input errors with `make_friendly_errors`."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import Any

import click

from metalearn.runs import RunExistsError, RunFolderError, RunModeError
from metalearn.trainer.errors import DivergedError, Interrupted
from metalearn.trainer.signals import ForcedStop


class CLIError(click.ClickException):
    """A one-line error with exit code 2 (bad input), never a traceback."""

    exit_code = 2


class InterruptedBySIGINT(CLIError):
    """Training stopped by SIGINT: exit 130, as the shell reports the signal."""

    exit_code = 128 + signal.SIGINT


class InterruptedBySIGTERM(CLIError):
    """Training stopped by SIGTERM: exit 143."""

    exit_code = 128 + signal.SIGTERM


SIGNAL_ERRORS: dict[int, type[CLIError]] = {
    signal.SIGINT: InterruptedBySIGINT,
    signal.SIGTERM: InterruptedBySIGTERM,
}

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    DivergedError,
    FileNotFoundError,
    ValueError,
    TypeError,
    ImportError,
    RunFolderError,
)
"""Bad input, a run folder that cannot be used as asked, or a diverged run: reported in one line."""

RUN_MODE_MESSAGE = "use either --resume (continue the run) or --overwrite (replace it), not both"
"""`metalearn.runs.RunModeError` in the CLI's terms."""


def make_friendly_errors(
    extra: tuple[type[BaseException], ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator turning the library's input errors (and `extra`, an application's own) into one-line CLI
    errors (exit 2); an interrupted run into one line saying where its checkpoint is and how to go on
    (exit 128 + the signal's number); a forced stop (a second Ctrl-C) into one line, exit 130."""
    input_errors = INPUT_ERRORS + extra

    def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except RunExistsError as exc:
                raise CLIError(run_exists_message(exc)) from None
            except RunModeError:
                raise CLIError(RUN_MODE_MESSAGE) from None
            except Interrupted as exc:  # exit 130 (SIGINT) or 143 (SIGTERM), as the shell reports a signal
                message = f"{exc}; pass --resume to continue" if exc.checkpoint else str(exc)
                raise SIGNAL_ERRORS.get(exc.signum, CLIError)(message) from None
            except ForcedStop as exc:
                raise SIGNAL_ERRORS.get(exc.signum, CLIError)(
                    f"{exc}; the files written so far are whole: pass --resume to continue from the last "
                    "checkpoint"
                ) from None
            except input_errors as exc:
                raise CLIError(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from None
            except OSError as exc:  # a folder that vanished or went read-only mid-run, a full disk ...
                # a rename's target (filename2), not the temporary file the atomic write renames from
                where = exc.filename2 or exc.filename or "output"
                raise CLIError(f"{where}: {exc.strerror or exc}") from None

        return wrapper

    return friendly_errors


friendly_errors = make_friendly_errors()
"""The core's decorator: the library's errors only."""


def run_exists_message(exc: RunExistsError) -> str:
    """`metalearn.runs.open_run`'s refusal in the CLI's terms: which flag continues the old run, which
    replaces it. A command calls `check_run_mode` (the core's) before loading data, `open_run` later."""
    if exc.foreign:
        return str(exc).splitlines()[0]
    return (
        f"{exc.path}: holds a previous run ({', '.join(exc.entries)}); pass --resume to continue it or "
        "--overwrite to replace it"
    )


def check_device(device: str) -> None:
    """Refuse a device this machine cannot run on before any data is loaded."""
    from metalearn.trainer import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None
