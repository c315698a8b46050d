"""Tasks: a support set to adapt on and a query set to judge the adaptation, as tensors or streamed batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeGuard, cast

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]
"""One `(inputs, targets)` pair."""

TaskData = Batch | Iterable[Batch]
"""Either one batch, used whole at every step, or an iterable of batches cycled step by step."""


class TaskError(ValueError):
    """A task or its data is malformed (empty set, mismatched inputs/targets)."""


def is_batch(data: object) -> TypeGuard[Batch | list[Tensor]]:
    """True when `data` is a single `(inputs, targets)` tensor pair rather than an iterable of batches."""
    return (
        isinstance(data, tuple | list)
        and len(data) == 2
        and isinstance(data[0], Tensor)
        and isinstance(data[1], Tensor)
    )


def _as_batch(pair: Batch | list[Tensor]) -> Batch:
    """A pair given as a list, as the tuple every consumer expects."""
    inputs, targets = pair
    return inputs, targets


def _streamed(data: TaskData) -> Iterable[Batch]:
    """`data` once `is_batch(data)` was False (a `TypeGuard` narrows only the branch where it holds)."""
    return cast("Iterable[Batch]", data)


def _check_batch(batch: object, where: str) -> Batch:
    if not is_batch(batch):
        raise TaskError(f"{where}: expected an (inputs, targets) tensor pair, got {type(batch).__name__}")
    inputs, targets = batch
    if len(inputs) == 0:
        raise TaskError(f"{where}: empty batch")
    if len(inputs) != len(targets):
        raise TaskError(f"{where}: {len(inputs)} inputs but {len(targets)} targets")
    return inputs, targets


@dataclass
class Task:
    """One meta-learning task: adapt on `support`, evaluate the adapted model on `query`.

    Each set is an `(inputs, targets)` pair or a re-iterable of such batches (a list, a DataLoader);
    one-shot iterators are materialised once so that several passes (inner steps) are possible.
    """

    support: TaskData
    query: TaskData
    name: str = ""

    def __post_init__(self) -> None:
        self.support = self._normalise(self.support, "support")
        self.query = self._normalise(self.query, "query")

    def _normalise(self, data: TaskData, which: str) -> TaskData:
        where = f"task {self.name!r} {which} set"
        if data is None:
            raise TaskError(f"{where} is missing")
        if is_batch(data):
            return _check_batch(tuple(data), where)
        if isinstance(data, Tensor | str | bytes | Mapping) or not isinstance(data, Iterable):
            what = (
                f"a bare tensor of shape {list(data.shape)}"
                if isinstance(data, Tensor)
                else type(data).__name__
            )
            raise TypeError(
                f"{where}: expected an (inputs, targets) pair of tensors or an iterable of such pairs, got {what}"
            )
        if isinstance(data, Iterator):
            data = list(data)
        if isinstance(data, list | tuple):
            if len(data) == 0:
                raise TaskError(f"{where} is empty")
            for index, batch in enumerate(data):  # a list is checked whole now; a stream as it is read
                _check_batch(batch, f"{where}, batch {index}")
        return data

    def support_batches(self, device: torch.device | None = None) -> Iterator[Batch]:
        """Endless stream of support batches (cycled), moved to `device`."""
        return cycle_batches(self.support, f"task {self.name!r} support set", device)

    def query_batches(self, device: torch.device | None = None) -> Iterator[Batch]:
        """Endless stream of query batches (cycled), moved to `device`."""
        return cycle_batches(self.query, f"task {self.name!r} query set", device)


def cycle_batches(data: TaskData, where: str = "data", device: torch.device | None = None) -> Iterator[Batch]:
    """Yield batches forever: the single pair again and again, or the iterable's batches in a cycle."""

    def move(batch: Batch) -> Batch:
        if device is None:
            return batch
        return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

    if is_batch(data):
        batch = move(_check_batch(tuple(data), where))
        while True:
            yield batch
    while True:
        count = 0
        for batch in _streamed(data):
            count += 1
            yield move(_check_batch(batch, where))
        if count == 0:
            raise TaskError(f"{where} is empty")


class ChainedData:
    """Several sets read as one re-iterable stream, lazily: a batch is drawn only when it is consumed.

    Unlike `concat_data`, streamed sets (random-crop batches) are not materialised whole, so an algorithm
    that takes k steps draws exactly k batches, and each new pass over a streamed set draws fresh ones.
    """

    def __init__(self, *sets: TaskData) -> None:
        self.sets = sets

    def __iter__(self) -> Iterator[Batch]:
        for data in self.sets:
            if is_batch(data):
                yield _as_batch(data)
            else:
                yield from _streamed(data)


def concat_data(*sets: TaskData) -> list[Batch]:
    """All batches of several sets as one list (for algorithms that train on a task's whole data)."""
    out: list[Batch] = []
    for data in sets:
        out.extend([_as_batch(data)] if is_batch(data) else list(_streamed(data)))
    return out
