"""Distortion-specific NR-IQA tasks: one task per distortion type, support/query split by reference image."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metalearn import Task
from metalearn.task import Batch
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.splits import group_by_distortion, split_by_reference
from metalearn_iqa.images.loader import CropSpec
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.images.transforms import crop_corner, fit_shape

COMPOSITIONS = ("type", "mixed")
"""What one task holds: one distortion type's images, or images of every training type."""


@dataclass(frozen=True)
class TaskConfig:
    """How tasks are cut from a database.

    Each support (query) set is `batches` batches of `batch_size` random `crop` x `crop` crops (randomly
    flipped) of images whose reference is on that side of the split; `support_fraction` of a type's
    references go to the support side.

    `composition`: "type" (the paper's) makes each task one distortion type; "mixed" draws each task's
    support and query from all the training types (split by content the same way). Mixed tasks are what
    keeps first-order MetaIQA from collapsing with k >= 3 inner steps or BatchNorm at one task per
    meta-batch (docs/results.md); more tasks per meta-batch (the paper's T = 5) average over types too.
    """

    crop: int = 224
    batch_size: int = 8
    batches: int = 6
    support_fraction: float = 0.5
    composition: str = "type"

    def __post_init__(self) -> None:
        if self.crop < 32:
            raise ValueError(f"crop must be at least 32 pixels (ResNet18 downsamples 32x), got {self.crop}")
        if self.batch_size < 1 or self.batches < 1:
            raise ValueError("batch_size and batches must be at least 1")
        if not 0.0 < self.support_fraction < 1.0:
            raise ValueError(f"support_fraction must be in (0, 1), got {self.support_fraction}")
        if self.composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {COMPOSITIONS}, got {self.composition!r}")


class CropBatches:
    """A re-iterable of batches of random crops (each mirrored left-right with probability 1/2) of `records`.

    With `n_batches` set (meta-training tasks), a pass is `n_batches` batches of `batch_size` images: drawn
    without replacement when there are enough, with replacement otherwise. With `n_batches=None`
    (fine-tuning), a pass is one epoch: every record exactly once, in shuffled batches of `batch_size`; a
    last batch of a single image joins the one before it (BatchNorm needs two). Each pass draws fresh
    crops, flips and order.

    Its own generator (seeded once) makes the stream independent of who consumes it and when, so tasks stay
    identical across processes and across a resume.
    """

    def __init__(
        self,
        records: Sequence[IQARecord],
        store: ImageStore,
        crop: int,
        batch_size: int,
        n_batches: int | None,
        seed: int,
    ) -> None:
        if not records:
            raise DatasetError("no images to draw batches from")
        self.records = list(records)
        self.store = store
        self.crop = crop
        self.batch_size = batch_size
        self.n_batches = n_batches
        self.generator = torch.Generator().manual_seed(seed)
        self._prepared: list[CropSpec] | None = None

    def __len__(self) -> int:
        if self.n_batches is None:
            n, size = len(self.records), self.batch_size
            return -(-n // size) - int(n > size and n % size == 1)  # see `epoch_batches`
        return self.n_batches

    def __iter__(self) -> Iterator[Batch]:
        specs, self._prepared = self._prepared, None
        if specs is None:
            specs = self.store.loader.submit(self._draw_pass())
        for spec in specs:
            yield self._batch(spec)

    def prepare(self) -> list[CropSpec]:
        """Draw the next pass now, for a loader to build ahead (the pass the next `iter` gives)."""
        if self._prepared is None:
            self._prepared = self._draw_pass()
        return self._prepared

    def _draw_pass(self) -> list[CropSpec]:
        """Every random draw of one pass, in the order the in-line crops once drew them."""
        picks = (
            epoch_batches(len(self.records), self.batch_size, self.generator)
            if self.n_batches is None
            else (self._draw() for _ in range(self.n_batches))
        )
        return [self._spec(indices) for indices in picks]

    def _draw(self) -> list[int]:
        """Indices of one randomly drawn batch."""
        n, g = len(self.records), self.generator
        if n >= self.batch_size:
            return torch.randperm(n, generator=g)[: self.batch_size].tolist()
        return torch.randint(n, (self.batch_size,), generator=g).tolist()  # BatchNorm needs a full batch

    def _spec(self, indices: list[int]) -> CropSpec:
        """Where the random crops (randomly mirrored) of the records at `indices` lie."""
        boxes = []
        for i in indices:
            h, w = fit_shape(*self.store.shape(self.records[i].path), self.crop)
            top, left = crop_corner(h, w, self.crop, self.generator)
            flip = bool(torch.rand((), generator=self.generator) < 0.5)
            boxes.append((top, left, flip))
        paths = tuple(self.records[i].path for i in indices)
        return CropSpec(paths, tuple(boxes), self.crop, tuple(self.records[i].score for i in indices))

    def _batch(self, spec: CropSpec) -> Batch:
        """Normalised crops and scores of one batch (built ahead by a loader worker, or now)."""
        return self.store.loader.get(spec)


def prefetch(tasks: Sequence[Task]) -> list[Task]:
    """Hand the first pass of every task's sets to their loader, in the order algorithms use them."""
    by_loader: dict[int, tuple[Any, list[CropBatches]]] = {}
    for task in tasks:
        for data in (task.support, task.query):
            if not isinstance(data, CropBatches) or data._prepared is not None:
                continue
            if all(data is not seen for _, sets in by_loader.values() for seen in sets):
                by_loader.setdefault(id(data.store), (data.store.loader, []))[1].append(data)
    for loader, sets in by_loader.values():
        keyed = iter(loader.submit([spec for data in sets for spec in data.prepare()], fresh=True))
        for data in sets:
            data._prepared = [next(keyed) for _ in data._prepared]  # type: ignore[union-attr]
    return list(tasks)


def check_batch_fits(batch_size: int, n_images: int) -> None:
    """Refuse a batch larger than the whole database before any image is read: its images would be drawn
    many times over (or the batch silently shrunk), which no setting means."""
    if batch_size > n_images:
        raise ValueError(f"batch size {batch_size} is larger than the {n_images} training images")


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A shuffled partition of range(n) into batches of `batch_size`; a lone leftover joins the last batch."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator))


def content_split_task(
    records: Sequence[IQARecord], config: TaskConfig, store: ImageStore, generator: torch.Generator, name: str
) -> Task:
    """A task of `records` split into support and query by content (reference image), each streamed as
    random-crop batches; all randomness drawn from `generator` (the split, then each side's seed)."""
    support, query = split_by_reference(records, config.support_fraction, generator)
    batches = (config.crop, config.batch_size, config.batches)
    return Task(
        support=CropBatches(support, store, *batches, _seed(generator)),
        query=CropBatches(query, store, *batches, _seed(generator)),
        name=name,
    )


class DistortionTaskSampler:
    """A `TaskSampler` over distortion types: each task is one type, split into support/query by content."""

    def __init__(
        self, records: Sequence[IQARecord], config: TaskConfig, store: ImageStore | None = None
    ) -> None:
        self.groups = group_by_distortion(records)
        if not self.groups:
            raise DatasetError("no records: cannot build distortion-specific tasks")
        for kind, group in self.groups.items():
            if len({r.reference or r.path for r in group}) < 2:
                raise DatasetError(
                    f"distortion type {kind} has images of only one reference: support and query need two"
                )
        self.config = config
        self.store = store or ImageStore()
        self.types = list(self.groups)

    def task(self, kind: int, generator: torch.Generator) -> Task:
        """One task for distortion type `kind`, all randomness drawn from `generator`."""
        return content_split_task(
            self.groups[kind], self.config, self.store, generator, f"distortion-{kind:02d}"
        )

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        if n <= len(self.types):
            picks = torch.randperm(len(self.types), generator=generator)[:n].tolist()
        else:
            picks = torch.randint(len(self.types), (n,), generator=generator).tolist()
        return prefetch([self.task(self.types[i], generator) for i in picks])


class MixedTaskSampler:
    """A `TaskSampler` whose tasks mix every training type: support and query are images of all the types,
    split by content (`TaskConfig.composition = "mixed"`)."""

    def __init__(
        self, records: Sequence[IQARecord], config: TaskConfig, store: ImageStore | None = None
    ) -> None:
        if len({r.reference or r.path for r in records}) < 2:
            raise DatasetError("mixed tasks need images of at least two references (support and query)")
        self.records = list(records)
        self.config = config
        self.store = store or ImageStore()

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        return prefetch(
            [content_split_task(self.records, self.config, self.store, generator, "mixed") for _ in range(n)]
        )


def training_batches(
    records: Sequence[IQARecord], store: ImageStore, crop: int, batch_size: int, seed: int
) -> CropBatches:
    """Fine-tuning data: each pass is one epoch over the training split in shuffled random-crop batches."""
    return CropBatches(records, store, crop, batch_size, None, seed)


class PooledBatchSampler:
    """A `TaskSampler` for plain training: each "task" is one random-crop batch of the pooled images.

    With the `baseline` algorithm (`Plain`) and one task per meta-batch, the trainer takes one optimizer step per batch,
    so plain training runs through the same loop, logs and checkpoints as the meta-learners.
    """

    def __init__(
        self, records: Sequence[IQARecord], config: TaskConfig, store: ImageStore | None = None
    ) -> None:
        if not records:
            raise DatasetError("no records: cannot build training batches")
        self.records = list(records)
        self.config = config
        self.store = store or ImageStore()

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        tasks = []
        for _ in range(n):
            cfg = self.config
            batch = CropBatches(self.records, self.store, cfg.crop, cfg.batch_size, 1, _seed(generator))
            tasks.append(Task(support=batch, query=batch, name="pooled"))
        return prefetch(tasks)
