"""One meta-batch's results summed as they arrive: one task's meta-gradient alive at a time, not T.

The trainer's `_meta_gradients` phase feeds `MetaAlgorithm.meta_steps(...)` (a stream) into `sum_results`;
what comes out (`MetaBatchSums`) is all-reduced over ranks, divided into the mean gradient and checked for
NaNs and infinities, task by task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn.algorithms.base import MetaResult


@dataclass
class MetaBatchSums:
    """One rank's meta-batch, summed: gradients and float buffers by name, the query losses, and per task
    0 (finite), 1 (non-finite loss) or 2 (non-finite meta-gradient or buffers)."""

    gradient: dict[str, Tensor]
    buffers: dict[str, Tensor]
    loss: Tensor
    faults: Tensor
    faulty: bool
    """Whether this rank found a fault (so a single process reads `faults` back only then)."""


def sum_results(
    results: Iterable[MetaResult],
    indices: list[int],
    count: int,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    device: torch.device,
) -> MetaBatchSums:
    """Sum the results in float32 (float64 kept) as they arrive, one fused add per task, so a meta-batch
    holds one task's meta-gradient at a time, not T of them; zeros where a rank had no task or a task no
    entry, so every rank sends the same list to the all-reduce. Each task's finiteness is noted on the
    device as it passes (no sync); it is read back once, for the whole meta-batch."""
    gradient = NamedSum(params)
    buffer_sum = NamedSum(buffers)
    losses: list[float] = []
    finite: list[Tensor] = []
    for result in results:
        gradient.add(result.gradient)
        buffer_sum.add(result.buffers)
        losses.append(result.loss)
        finite.append(
            finite_flag([*gradient.entries(result.gradient), *buffer_sum.entries(result.buffers)], device)
        )
        del result  # the next task runs while the loop variable would still hold this one
    flags = torch.stack(finite) if finite else torch.ones(0, dtype=torch.bool, device=device)
    faulty = not (all(math.isfinite(x) for x in losses) and bool(flags.all()))
    faults = torch.zeros(count, device=device)
    if faulty:  # something is off: say which task (1: its loss, 2: its meta-gradient or buffers)
        for index, task_loss, ok in zip(indices, losses, flags.tolist()):
            faults[index] = 1.0 if not math.isfinite(task_loss) else (0.0 if ok else 2.0)
    loss = torch.tensor([sum(losses)], dtype=torch.float32, device=device)
    return MetaBatchSums(gradient.totals(), buffer_sum.totals(), loss, faults, faulty)


class NamedSum:
    """A running sum of named tensors over tasks, in the reference's names and order (zeros where absent)."""

    def __init__(self, reference: Mapping[str, Tensor]) -> None:
        self._reference = reference
        self._names = list(reference)
        self._totals: list[Tensor] | None = None

    def entries(self, entry: Mapping[str, Tensor]) -> list[Tensor]:
        """The tensors of `entry` this sum takes (those named in the reference)."""
        return [entry[n] for n in self._names if n in entry]

    def add(self, entry: Mapping[str, Tensor]) -> None:
        if self._totals is None:  # the first task's values, copied: an algorithm may reuse its buffers
            self._totals = [
                entry[n].detach().to(sum_dtype(entry[n]), copy=True) if n in entry else self._zeros(n)
                for n in self._names
            ]
            return
        present = [(t, entry[n].detach()) for t, n in zip(self._totals, self._names) if n in entry]
        if present:
            torch._foreach_add_([t for t, _ in present], [v for _, v in present])

    def totals(self) -> dict[str, Tensor]:
        totals = self._totals if self._totals is not None else [self._zeros(n) for n in self._names]
        return dict(zip(self._names, totals))

    def _zeros(self, name: str) -> Tensor:
        return torch.zeros_like(self._reference[name], dtype=sum_dtype(self._reference[name]))


def sum_dtype(tensor: Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)  # keep float64 exact, lift bf16


def finite_flag(tensors: list[Tensor], device: torch.device) -> Tensor:
    """A device bool: True when no tensor holds a NaN or an infinity (their max-norms are finite: NaN
    propagates, and no finite value overflows). One fused pass, no sync."""
    if not tensors:
        return torch.ones((), dtype=torch.bool, device=device)
    norms = torch._foreach_norm([t.detach() for t in tensors], float("inf"))
    return torch.stack([n.to(device) for n in norms]).isfinite().all()
