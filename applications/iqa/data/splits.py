"""Splitting a database's records: by content (reference image), and by distortion type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from metalearn_iqa.data.records import DatasetError, IQARecord


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
