"""Training batches built ahead of use in DataLoader worker processes, identical whatever their number.

All randomness (which images, where each crop lies, which are mirrored) is drawn in the main process into a
`CropSpec`; a worker only decodes (through the `ImageStore`'s cache), crops and normalises. So a batch is a
pure function of its spec, and 0, 1 or 8 workers give the same batches bit for bit.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from metalearn.task import Batch
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.images.transforms import fit, normalise

if TYPE_CHECKING:
    from metalearn_iqa.images.store import ImageStore

PREFETCH = 4
"""Batches each worker keeps in flight."""


@dataclass(frozen=True)
class CropSpec:
    """One batch, fully determined: the images, each crop's (top, left, mirrored), the crop size, the scores."""

    paths: tuple[str, ...]
    boxes: tuple[tuple[int, int, bool], ...]
    size: int
    scores: tuple[float, ...]
    key: int = field(default=-1, compare=False)


def make_batch(store: ImageStore, spec: CropSpec) -> Batch:
    """The normalised crops (B, 3, size, size) and float32 scores (B,) that `spec` describes."""
    size = spec.size
    crops = torch.empty((len(spec.paths), 3, size, size), dtype=torch.uint8)
    for out, path, (top, left, flip) in zip(crops, spec.paths, spec.boxes):
        crop = fit(store(path), size)[:, top : top + size, left : left + size]
        out.copy_(crop.flip(-1) if flip else crop)
    scores = torch.tensor(spec.scores, dtype=torch.float32)
    if get_worker_info() is None:
        return normalise(crops), scores
    inputs = _shared_float(crops.shape)  # written once, handed to the main process without a copy
    return normalise(crops, out=inputs), scores


def _shared_float(shape: torch.Size) -> Tensor:
    """An uninitialised float32 tensor in shared memory (as DataLoader's own collation allocates batches)."""
    storage = torch.empty(0)._typed_storage()._new_shared(shape.numel())
    return torch.empty(0).new(storage).view(shape)


class _Batches(Dataset):
    """What a worker runs: a spec in, its batch out (a bad image comes back as its one-line message).

    It refers to the store weakly (a worker's forked copy stays valid), so that a store that owns a loader
    is freed, and its workers shut down, as soon as the last reference to the store goes.
    """

    def __init__(self, store: ImageStore) -> None:
        self._store: Callable[[], ImageStore | None] = weakref.ref(store)

    def __getstate__(self) -> dict[str, Any]:  # spawned workers get the store itself
        return {"store": self._store()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        store = state["store"]
        self._store = lambda: store

    def __getitem__(self, spec: CropSpec) -> tuple[int, Batch | str]:
        store = self._store()
        assert store is not None, "the image store was freed while its loader ran"
        try:
            return spec.key, make_batch(store, spec)
        except DatasetError as exc:
            return spec.key, str(exc)


class _Pending:
    """The DataLoader's index stream: specs waiting to be sent to a worker, taken front first.

    Running dry ends only the current pass of the DataLoader; `CropLoader` starts a new one for new specs.
    """

    def __init__(self) -> None:
        self.queue: deque[CropSpec] = deque()
        self.sent: set[int] = set()

    def __iter__(self) -> Iterator[CropSpec]:
        return self

    def __next__(self) -> CropSpec:
        if not self.queue:
            raise StopIteration
        spec = self.queue.popleft()
        self.sent.add(spec.key)
        return spec


class CropLoader:
    """Builds `CropSpec` batches: in-process with 0 workers, else in a persistent `DataLoader`'s workers.

    Callers `submit` specs in the order they expect to use them (a sampler: its tasks' first passes, at
    sampling time), then `get` each. Workers keep `PREFETCH` batches each in flight. A spec asked for ahead
    of others still waiting drops those (an algorithm that uses one query batch of six, or a rank that
    trains on other tasks, does not pay for the rest); any spec not built ahead is built in-process, so the
    loader only ever changes speed, never results. It refers to `store` weakly (the store owns it).
    """

    def __init__(self, store: ImageStore, workers: int = 0) -> None:
        self._store = weakref.ref(store)
        self.workers = workers
        self._keys = count()
        self._pending = _Pending()
        self._ready: dict[int, Batch | str] = {}
        self._wanted: set[int] = set()
        self._loader: DataLoader | None = None
        self._iter: Iterator[tuple[int, Batch | str]] | None = None

    def submit(self, specs: Sequence[CropSpec], fresh: bool = False) -> list[CropSpec]:
        """Queue `specs` (keyed copies are returned: `get` those); `fresh` forgets what earlier calls queued."""
        keyed = [CropSpec(s.paths, s.boxes, s.size, s.scores, next(self._keys)) for s in specs]
        if not self.workers:
            return keyed
        if fresh:
            self._pending.queue.clear()
            self._ready.clear()
            self._wanted.clear()
        self._pending.queue.extend(keyed)
        self._wanted.update(s.key for s in keyed)
        if self._iter is None or not self._in_flight():
            self._restart()
        return keyed

    def get(self, spec: CropSpec) -> Batch:
        """The batch of `spec`: built ahead by a worker if it was submitted, else now."""
        while spec.key in self._wanted:
            if spec.key in self._ready:
                self._wanted.discard(spec.key)
                return self._unpack(self._ready.pop(spec.key))
            if spec.key not in self._pending.sent:
                self._skip_to(spec.key)
            assert self._iter is not None
            try:
                key, result = next(self._iter)
            except StopIteration:
                self._restart()
                continue
            self._pending.sent.discard(key)
            if key in self._wanted:
                self._ready[key] = result
        return make_batch(self.store, spec)

    @property
    def store(self) -> ImageStore:
        store = self._store()
        assert store is not None, "the ImageStore of this loader is gone"
        return store

    def _in_flight(self) -> bool:
        return bool(self._pending.sent)

    def _skip_to(self, key: int) -> None:
        """Drop the waiting specs queued before `key` (not wanted after all, or not by this process)."""
        queue = self._pending.queue
        if not any(s.key == key for s in queue):
            self._wanted.discard(key)  # never sent and no longer queued: built in-process
            return
        while queue[0].key != key:
            self._wanted.discard(queue.popleft().key)

    def _restart(self) -> None:
        """Start a new pass of the persistent DataLoader over the pending specs (workers are kept)."""
        if self._loader is None:
            self._loader = DataLoader(
                _Batches(self.store),
                sampler=self._pending,
                batch_size=None,
                num_workers=self.workers,
                persistent_workers=True,
                prefetch_factor=PREFETCH,
                generator=torch.Generator(),  # leaves the global RNG alone (its seeds are unused here)
            )
        self._iter = iter(self._loader)

    @staticmethod
    def _unpack(result: Batch | str) -> Batch:
        if isinstance(result, str):
            raise DatasetError(result)
        return result
