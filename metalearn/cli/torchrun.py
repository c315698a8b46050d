"""`torchrun` for any training command of the `metalearn` CLI (an application's too): each rank joins the process
group its environment describes, via `metalearn.distributed.process_group`."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any

import click
import torch.distributed as dist

from metalearn.distributed import (
    launch_from_env,
    process_group,
    rank_device,
    timeout_from_env,
)

__all__ = ["LaunchError", "torchrun_command"]


class LaunchError(click.ClickException):
    """The torchrun environment or the process group is unusable: one line, exit 2."""

    exit_code = 2


def torchrun_command(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run `command` as one rank of a `torchrun` launch when WORLD_SIZE > 1, else as it is.

    Each rank joins the process group (NCCL on a GPU, gloo on the CPU; see `process_group`), trains on
    the GPU of its LOCAL_RANK when `--device` is `auto` or `cuda`, and leaves the group on the way out,
    whatever happens. Rank 0 prints; the others' standard output is dropped (their errors still show).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            launch = launch_from_env()
            if launch is None:
                return command(*args, **kwargs)
            device = rank_device(str(kwargs.get("device", "auto")), launch)
            timeout = timeout_from_env()
        except ValueError as exc:
            raise LaunchError(f"torchrun: {exc}") from None
        if "device" in kwargs:
            kwargs["device"] = str(device)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(process_group(launch, device, timeout))
            except (RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise LaunchError(
                    f"torchrun rank {launch.rank}: cannot join the process group ({first})"
                ) from None
            if launch.rank != 0:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            try:
                return command(*args, **kwargs)
            except RuntimeError as exc:  # another rank died or stopped answering: one line, exit 1
                if not isinstance(exc, dist.DistError) and not _raised_by_torch_distributed(exc):
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise click.ClickException(
                    f"torchrun rank {launch.rank}: lost the other ranks ({first})"
                ) from None

    return wrapper


def _raised_by_torch_distributed(exc: BaseException) -> bool:
    """Whether `exc` comes out of a torch.distributed collective (gloo raises plain RuntimeErrors)."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and "torch/distributed/" in last.tb_frame.f_code.co_filename.replace("\\", "/")
