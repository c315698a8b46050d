"""Each registered algorithm's `passes_per_task` is what its `meta_step` spends: batches drawn and loss
evaluations counted, on regression and on classification tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from metalearn.algorithms import (
    ALGORITHMS,
    LossFn,
    MetaAlgorithm,
    MetaResult,
    algorithm_class,
    get_algorithm,
    hyper_parameter_names,
)
from metalearn.task import Task, TaskData
from tests.helpers import episode, tiny_conv

CANONICAL = sorted({cls.name for cls in ALGORITHMS.values()})


class Counted:
    """A streamed set of batches that counts the batches drawn from it."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.batches, self.drawn = batches, 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.batches:
            self.drawn += 1
            yield batch


def regression(n: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    return [
        (torch.randn(4, 1, generator=generator), torch.randn(4, 1, generator=generator)) for _ in range(n)
    ]


def classification(n: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    seeds = torch.randint(0, 2**31, (n,), generator=generator).tolist()
    return [episode(seed=seed).support for seed in seeds]  # type: ignore[misc]


@pytest.mark.parametrize("workload", ["regression", "classification"])
@pytest.mark.parametrize("name", CANONICAL)
@pytest.mark.parametrize(("steps", "sets"), [(1, 3), (3, 2)])
def test_passes_per_task_counts_the_batches_drawn(name: str, steps: int, sets: int, workload: str) -> None:
    """`sets` batches in support and in query, and a step count unlike it, so a count of the wrong one shows.
    Each batch drawn is one forward+backward pass; the loss evaluations match too (ProtoNets: one loss over
    the pooled support's prototypes)."""
    if name.startswith("l2l-"):
        pytest.importorskip("learn2learn")
    hyper = {"inner_steps": steps} if "inner_steps" in hyper_parameter_names(algorithm_class(name)) else {}
    algorithm = get_algorithm(name, **hyper)
    generator = torch.Generator().manual_seed(0)
    make, model, loss = (
        (regression, nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)), nn.functional.mse_loss)
        if workload == "regression"
        else (classification, tiny_conv(), nn.functional.cross_entropy)
    )
    support, query = Counted(make(sets, generator)), Counted(make(sets, generator))
    calls = 0

    def counted(pred: Tensor, target: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return loss(pred, target)

    if workload == "regression" and algorithm.needs_class_labels:
        with pytest.raises(ValueError, match=f"^{name} needs integer class labels"):
            algorithm.meta_step(model, Task(support=support, query=query), counted)
        return
    algorithm.meta_step(model, Task(support=support, query=query), counted)
    assert support.drawn + query.drawn == algorithm.passes_per_task(sets)
    assert calls == (1 if name == "protonet" else algorithm.passes_per_task(sets))


def test_an_algorithm_without_a_declared_cost_says_so() -> None:
    class Silent(MetaAlgorithm):
        def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
            raise AssertionError

        def adapt(
            self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None
        ) -> nn.Module:
            raise AssertionError

    with pytest.raises(NotImplementedError, match="Silent does not declare passes_per_task"):
        Silent().passes_per_task(1)
