"""Process-group helpers: under `torchrun`, ranks split a meta-batch and all-reduce their meta-gradients;
rank 0 alone touches the run folder and every rank shares its outcome."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What `torchrun` sets in each worker's environment (and `init_process_group("env://")` reads)."""
TIMEOUT_VARIABLE = "METALEARN_DIST_TIMEOUT"
"""Seconds a rank waits in a collective for the others before it fails (default `DEFAULT_TIMEOUT_S`)."""
DEFAULT_TIMEOUT_S = 1800.0


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device() -> torch.device:
    """Where tensors for a collective must live: this rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensors: list[Tensor]) -> None:
    """Sum tensors in place across ranks with one flat all-reduce (a no-op in a single process).

    The sum is taken in float32, or in float64 if any tensor is float64 (so double-precision runs stay exact).
    """
    _, world = rank_and_world()
    if world == 1 or not tensors:
        return
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank `src`'s parameters and buffers."""
    _, world = rank_and_world()
    if world == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (`[obj]` in a single process)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def _sync() -> None:
    """Wait until every rank gets here (a one-number all-reduce: a barrier that works on every backend)."""
    dist.all_reduce(torch.zeros(1, device=_collective_device()))


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each machine's LOCAL_RANK 0 first, then on its other ranks.

    For work that fills a per-machine cache (generating a database, downloading weights): one process per
    machine does it while the others wait, then they find it done. Every rank must enter it. If the first
    one fails, the others still run the block (and meet the same error themselves).
    """
    rank, world = rank_and_world()
    if world == 1:
        yield
        return
    first = int(os.environ.get("LOCAL_RANK", rank)) == 0
    if not first:
        _sync()
    try:
        yield
    finally:
        if first:
            _sync()


def agreed_signal(received: list[int]) -> int:
    """The stop signal some rank has received (the highest number if several), 0 if none.

    Every rank calls it once per iteration and gets the same answer, so all ranks stop at the same
    iteration whichever of them the signal reached first.
    """
    local = received[0] if received else 0
    _, world = rank_and_world()
    if world == 1:
        return local
    flag = torch.tensor([local], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on rank 0 only; every rank returns its result or raises its exception.

    Rank 0 alone touches the run folder (lock, checkpoints, reports): the other ranks wait here and share
    what happened, so an error there stops every rank at once rather than leaving them blocked in the next
    collective. In a single process it is a plain call. Every rank must call it, in the same order.
    """
    rank, world = rank_and_world()
    if world == 1:
        return fn(*args, **kwargs)
    outcome: list[Any] = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            outcome = [(True, fn(*args, **kwargs))]
        except BaseException as exc:  # noqa: B036 - shared with the others, then re-raised here
            error = exc
            outcome = [(False, _portable(exc))]
    dist.broadcast_object_list(outcome, src=0, device=_collective_device())
    ok, value = outcome[0]
    if error is not None:
        raise error
    if not ok:
        raise _rebuild(*value)
    return value


def _portable(exc: BaseException) -> tuple[Any, ...]:
    """`exc` as picklable parts for `_rebuild`: itself when it survives pickling, else its class, args and
    attributes (an exception whose `__init__` takes more than its message does not unpickle), else its text."""
    with contextlib.suppress(Exception):
        pickle.loads(pickle.dumps(exc))
        return (exc,)
    parts = (type(exc), exc.args, dict(vars(exc)))
    with contextlib.suppress(Exception):
        _rebuild(*pickle.loads(pickle.dumps(parts)))
        return parts
    return (RuntimeError(f"{type(exc).__name__}: {exc}"),)


def _rebuild(
    exc: BaseException | type[BaseException], args: tuple[Any, ...] = (), state: dict[str, Any] | None = None
) -> BaseException:
    """The exception `_portable` took apart."""
    if isinstance(exc, BaseException):
        return exc
    rebuilt = exc.__new__(exc, *args)
    rebuilt.args = args
    rebuilt.__dict__.update(state or {})
    return rebuilt


# -- joining a torchrun launch ------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """This process's place in a `torchrun` launch, read from its environment."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The `torchrun` launch this process belongs to, or None when it runs alone (WORLD_SIZE unset or 1).

    A ValueError names what is missing or malformed when WORLD_SIZE > 1 but the other variables are not
    those torchrun sets.
    """
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={env['WORLD_SIZE']!r} is not a number") from None
    if world <= 1:
        return None
    missing = [name for name in LAUNCH_VARIABLES if not env.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} but {', '.join(missing)} unset: start the ranks with torchrun "
            "(see docs/distributed.md)"
        )
    try:
        rank, local_rank = int(env["RANK"]), int(env["LOCAL_RANK"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise ValueError("RANK, LOCAL_RANK and LOCAL_WORLD_SIZE must be numbers") from None
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} outside 0..{world - 1}")
    return Launch(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def rank_device(device: str, launch: Launch) -> torch.device:
    """The device this rank trains on: `auto` and `cuda` mean the GPU of its LOCAL_RANK (CPU without CUDA).

    An explicit `cuda:N` is kept only when one rank runs per node (several ranks cannot share a GPU under
    NCCL); a ValueError says so otherwise.
    """
    if device in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if device == "cuda":
                raise ValueError("device 'cuda': no CUDA GPU is available here (use cpu or auto)")
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if launch.local_rank >= count:
            raise ValueError(
                f"LOCAL_RANK={launch.local_rank} but this node has {count} GPU(s): start at most {count} "
                "processes per node (--nproc-per-node)"
            )
        return torch.device("cuda", launch.local_rank)
    resolved = torch.device(device)
    if resolved.type == "cuda" and launch.local_world_size > 1:
        raise ValueError(
            f"device {device!r} under torchrun with {launch.local_world_size} processes per node: each rank "
            "uses the GPU of its LOCAL_RANK, pass --device cuda (or auto)"
        )
    return resolved


def timeout_from_env(environ: Mapping[str, str] | None = None) -> timedelta:
    """How long a collective may wait for a missing rank: `METALEARN_DIST_TIMEOUT` seconds, or 30 minutes."""
    env = os.environ if environ is None else environ
    text = env.get(TIMEOUT_VARIABLE)
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r} must be positive")
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def process_group(
    launch: Launch,
    device: torch.device,
    timeout: timedelta | None = None,
    init_method: str = "env://",
) -> Iterator[None]:
    """Join the launch's process group for the block (NCCL on a GPU, gloo otherwise) and leave it after.

    Collectives fail after `timeout` (default `timeout_from_env()`) rather than wait forever for a rank
    that died. `init_method` is how the ranks find each other: `env://` (what `torchrun` sets up) or a
    `file://` path that no other launch uses (what the tests use: it cannot collide with a port in use).

    Leaving: when the block ends normally, every rank first waits for the others at a barrier (with the
    same timeout), so no rank tears its connections down while a peer is still inside a collective (gloo's
    shutdown race: "Connection reset by peer" in the slower rank). When the block raises, the rank leaves
    at once without waiting on peers that may be gone, so they fail fast too.
    """
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timeout or timeout_from_env()
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=launch.rank,
        world_size=launch.world_size,
        timeout=timeout,
    )
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    try:
        _barrier(timeout)
    finally:
        dist.destroy_process_group()


def _barrier(timeout: timedelta) -> None:
    """Wait until every rank gets here, failing after `timeout` (gloo names the ranks that did not come)."""
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
    else:
        dist.barrier(device_ids=[torch.cuda.current_device()])
