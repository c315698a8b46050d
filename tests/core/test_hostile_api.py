"""The Python API refuses nonsense when it is given, naming it: every registered algorithm's inner rate and
`adapt` steps, and task sets that are not batches (the trainer's own settings: test_trainer_config.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metalearn.algorithms import ALGORITHMS, algorithm_class, get_algorithm, hyper_parameter_names
from metalearn.algorithms.base import LossFn
from metalearn.checks import finite_at_least, positive_finite, whole_number

RATES = {
    name: rate
    for name in sorted(set(ALGORITHMS))
    for rate in ("inner_lr", "adapt_lr")
    if rate in hyper_parameter_names(algorithm_class(name))
}
"""Each algorithm with an inner (or adaptation) learning rate, and that rate's name."""

BAD_RATES = [
    (float("nan"), ValueError),
    (float("inf"), ValueError),
    (-1.0, ValueError),
    (-1e-4, ValueError),
    (0.0, ValueError),
    ("0.1", TypeError),
    (True, TypeError),
    (None, TypeError),
]


def test_every_algorithm_with_an_inner_loop_is_covered() -> None:
    with_rate = {name for name in ALGORITHMS if name in RATES}
    assert {"maml", "fomaml", "anil", "reptile", "metasgd", "metaiqa", "baseline"} <= with_rate
    assert "protonet" not in with_rate  # no rate: nothing to refuse


@pytest.mark.parametrize("name", sorted(RATES))
@pytest.mark.parametrize("value, error", BAD_RATES, ids=[repr(v) for v, _ in BAD_RATES])
def test_a_rate_no_adaptation_can_use_is_refused_when_built(name: str, value: object, error: type) -> None:
    with pytest.raises(error, match=f"{RATES[name]} must be a positive finite number"):
        get_algorithm(name, **{RATES[name]: value})


@pytest.mark.parametrize("name", sorted(RATES))
def test_a_good_rate_is_kept(name: str) -> None:
    assert getattr(get_algorithm(name, **{RATES[name]: 3e-4}), RATES[name]) == 3e-4


def _regression_model_and_data(name: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], LossFn]:
    torch.manual_seed(0)
    if algorithm_class(name).needs_class_labels:  # prototypes: integer labels, an embedding
        data = (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
        return nn.Linear(3, 2), data, nn.functional.cross_entropy
    return (
        nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)),
        (torch.randn(4, 3), torch.randn(4, 1)),
        (nn.functional.mse_loss),
    )


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS)))
@pytest.mark.parametrize(
    "steps, error", [(-3, ValueError), (2.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_adapt_refuses_steps_that_are_not_a_count(name: str, steps: object, error: type) -> None:
    model, data, loss = _regression_model_and_data(name)
    algorithm = get_algorithm(name)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match="steps"):
        algorithm.adapt(model, data, loss, steps=steps)  # type: ignore[arg-type]  # wrong on purpose
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS)))
def test_adapt_with_zero_steps_returns_the_model_as_it_is(name: str) -> None:
    model, data, loss = _regression_model_and_data(name)
    adapted = get_algorithm(name).adapt(model, data, loss, steps=0)
    inputs = data[0]
    if not algorithm_class(name).needs_class_labels:
        assert torch.equal(adapted(inputs), model(inputs))


@pytest.mark.parametrize("name", ["maml", "anil", "reptile", "metasgd", "metaiqa"])
@pytest.mark.parametrize("steps, error", [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_inner_steps_must_be_a_count_of_at_least_one(name: str, steps: object, error: type) -> None:
    with pytest.raises(error, match="inner_steps"):
        get_algorithm(name, inner_steps=steps)


@pytest.mark.parametrize(
    "check, value, error",
    [
        (positive_finite, math.nan, ValueError),
        (positive_finite, -math.inf, ValueError),
        (positive_finite, False, TypeError),
        (lambda n, v: finite_at_least(n, v, 0), -0.5, ValueError),
        (lambda n, v: finite_at_least(n, v, 0), math.inf, ValueError),
        (lambda n, v: whole_number(n, v, 1), 0, ValueError),
        (lambda n, v: whole_number(n, v, 1), 2.0, TypeError),
    ],
)
def test_the_shared_checks_name_the_value(check, value: object, error: type) -> None:
    with pytest.raises(error, match="the_setting"):
        check("the_setting", value)


def test_the_shared_checks_return_plain_numbers() -> None:
    import numpy as np

    assert positive_finite("x", np.float32(0.5)) == 0.5 and type(positive_finite("x", 2)) is float
    assert whole_number("n", np.int64(3), 1) == 3 and type(whole_number("n", np.int64(3), 1)) is int
