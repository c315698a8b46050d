"""Each registered algorithm's `passes_per_task` is what its `meta_step` spends: loss evaluations counted."""

from __future__ import annotations

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

CANONICAL = sorted({cls.name for cls in ALGORITHMS.values()})


def batches(n: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    return [
        (torch.randn(4, 1, generator=generator), torch.randn(4, 1, generator=generator)) for _ in range(n)
    ]


@pytest.mark.parametrize("name", CANONICAL)
@pytest.mark.parametrize(("steps", "sets"), [(1, 3), (3, 2)])
def test_passes_per_task_counts_the_loss_evaluations(name: str, steps: int, sets: int) -> None:
    """`sets` batches in support and in query, and a step count unlike it, so a count of the wrong one shows."""
    if name.startswith("l2l-"):
        pytest.importorskip("learn2learn")
    hyper = {"inner_steps": steps} if "inner_steps" in hyper_parameter_names(algorithm_class(name)) else {}
    algorithm = get_algorithm(name, **hyper)
    generator = torch.Generator().manual_seed(0)
    task = Task(support=batches(sets, generator), query=batches(sets, generator))
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    calls = 0

    def counted(pred: Tensor, target: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return nn.functional.mse_loss(pred, target)

    algorithm.meta_step(model, task, counted)
    assert calls == algorithm.passes_per_task(sets)


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
