"""Distortion-specific NR-IQA tasks: one task per distortion type, support/query split by reference image."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn import Task
from metalearn.task import Batch
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.images import ImageStore, normalise, random_crop


@dataclass(frozen=True)
class TaskConfig:
    """How tasks are cut from a database.

    Each support (query) set is `batches` batches of `batch_size` random `crop` x `crop` crops of images whose
    reference is on that side of the split; `support_fraction` of a type's references go to the support side.
    """

    crop: int = 224
    batch_size: int = 8
    batches: int = 6
    support_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.crop < 32:
            raise ValueError(f"crop must be at least 32 pixels (ResNet18 downsamples 32x), got {self.crop}")
        if self.batch_size < 1 or self.batches < 1:
            raise ValueError("batch_size and batches must be at least 1")
        if not 0.0 < self.support_fraction < 1.0:
            raise ValueError(f"support_fraction must be in (0, 1), got {self.support_fraction}")


class CropBatches:
    """A re-iterable of `n_batches` random-crop batches from `records`; each pass draws fresh crops.

    Batches are always `batch_size` images: without replacement when there are enough, with replacement
    otherwise.

    Its own generator (seeded once) makes the stream independent of who consumes it and when, so tasks stay
    identical across processes and across a resume.
    """

    def __init__(
        self,
        records: Sequence[IQARecord],
        store: ImageStore,
        crop: int,
        batch_size: int,
        n_batches: int,
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

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.n_batches):
            n, g = len(self.records), self.generator
            if n >= self.batch_size:
                picks = torch.randperm(n, generator=g)[: self.batch_size].tolist()
            else:  # fewer images than a batch: draw with replacement (BatchNorm needs more than one sample)
                picks = torch.randint(n, (self.batch_size,), generator=g).tolist()
            crops = [random_crop(self.store(self.records[i].path), self.crop, self.generator) for i in picks]
            scores = torch.tensor([self.records[i].score for i in picks], dtype=torch.float32)
            yield normalise(torch.stack(crops)), scores


def split_by_reference(
    records: Sequence[IQARecord], fraction: float, generator: torch.Generator
) -> tuple[list[IQARecord], list[IQARecord]]:
    """Split records so that no reference image (content) is on both sides; `fraction` of references go first."""
    references = sorted({r.reference or r.path for r in records})
    if len(references) < 2:
        raise DatasetError(f"{len(references)} reference image(s): cannot split by content")
    order = torch.randperm(len(references), generator=generator).tolist()
    n_first = min(len(references) - 1, max(1, round(fraction * len(references))))
    first = {references[i] for i in order[:n_first]}
    left = [r for r in records if (r.reference or r.path) in first]
    right = [r for r in records if (r.reference or r.path) not in first]
    return left, right


def group_by_distortion(records: Sequence[IQARecord]) -> dict[int, list[IQARecord]]:
    """Records per distortion type; records without a type cannot form distortion-specific tasks."""
    groups: dict[int, list[IQARecord]] = defaultdict(list)
    for record in records:
        if record.distortion is None:
            raise DatasetError(
                f"{record.path}: no distortion type, so it cannot join a distortion-specific task"
            )
        groups[record.distortion].append(record)
    return dict(sorted(groups.items()))


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator))


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
        support, query = split_by_reference(self.groups[kind], self.config.support_fraction, generator)
        cfg = self.config
        return Task(
            support=CropBatches(support, self.store, cfg.crop, cfg.batch_size, cfg.batches, _seed(generator)),
            query=CropBatches(query, self.store, cfg.crop, cfg.batch_size, cfg.batches, _seed(generator)),
            name=f"distortion-{kind:02d}",
        )

    def sample(self, n: int, generator: torch.Generator) -> list[Task]:
        if n < 1:
            raise ValueError(f"cannot sample {n} tasks: n must be at least 1")
        if n <= len(self.types):
            picks = torch.randperm(len(self.types), generator=generator)[:n].tolist()
        else:
            picks = torch.randint(len(self.types), (n,), generator=generator).tolist()
        return [self.task(self.types[i], generator) for i in picks]


def training_batches(
    records: Sequence[IQARecord],
    store: ImageStore,
    crop: int,
    batch_size: int,
    seed: int,
    n_batches: int = 64,
) -> CropBatches:
    """Random-crop batches over a whole training split (for fine-tuning); cycled as long as steps require."""
    return CropBatches(records, store, crop, batch_size, n_batches, seed)


def scores_tensor(records: Sequence[IQARecord]) -> Tensor:
    return torch.tensor([r.score for r in records], dtype=torch.float32)


class PooledBatchSampler:
    """A `TaskSampler` for plain training: each "task" is one random-crop batch of the pooled images.

    With the `plain` algorithm and one task per meta-batch, the trainer takes one optimizer step per batch,
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
        return tasks
