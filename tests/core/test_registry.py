"""The one algorithm registry: every algorithm's config round-trips, names are unique, and it accepts newcomers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from torch import nn

from metalearn.algorithms import (
    ALGORITHMS,
    MAML,
    MetaAlgorithm,
    MetaResult,
    algorithm_class,
    get_algorithm,
    hyper_parameter_names,
    register_algorithm,
    registry,
)
from metalearn.algorithms.base import LossFn
from metalearn.task import Task, TaskData

CANONICAL = sorted({cls.name for cls in ALGORITHMS.values()})
"""Each registered algorithm once, by its own name (aliases such as `bilevel_adam` left out)."""

NON_DEFAULT: dict[str, object] = {
    "inner_lr": 0.123,
    "inner_steps": 3,
    "first_order": True,
    "inner_optimizer": "adam",
    "betas": (0.5, 0.75),
    "signal": "displacement",
    "reset_inner_state": False,
    "weight_decay": 0.01,
    "adapt_lr": 0.456,
    "adapt_steps": 7,
    "adapt_optimizer": "adam",
    "distance": "cosine",
    "scale": 2.5,
    "head": "classifier",
    "adapt_betas": (0.25, 0.5),
}
"""A value unlike the default for every hyper-parameter any core algorithm has."""


def build(name: str, **hyper: object) -> MetaAlgorithm:
    if name.startswith("l2l-"):
        pytest.importorskip("learn2learn")
    return get_algorithm(name, **hyper)


@pytest.mark.parametrize("name", CANONICAL)
def test_config_lists_every_hyper_parameter_and_rebuilds_the_algorithm(name: str) -> None:
    fields = hyper_parameter_names(algorithm_class(name))
    assert fields, f"{name} declares no dataclass hyper-parameters"
    assert set(fields) <= set(NON_DEFAULT), f"add {set(fields) - set(NON_DEFAULT)} to NON_DEFAULT"
    original = build(name, **{field: NON_DEFAULT[field] for field in fields})
    config = original.config()
    assert set(config) == {"name", *fields}  # nothing dropped (MAML's betas, L2LMAML's first_order were)
    assert config["name"] == name
    stored = json.loads(json.dumps(config))  # as config.json holds it: tuples come back as lists
    rebuilt = build(**stored)
    assert type(rebuilt) is type(original)
    assert rebuilt.config() == config
    for field in fields:
        assert getattr(rebuilt, field) == NON_DEFAULT[field]


def test_aliases_build_the_same_class_under_its_own_name() -> None:
    algorithm = get_algorithm("BILEVEL_ADAM")
    assert algorithm.name == "metaiqa" and algorithm.config()["name"] == "metaiqa"
    assert get_algorithm("fomaml").config()["name"] == "fomaml"
    assert "first_order" not in get_algorithm("fomaml").config()  # FOMAML is first-order by definition
    assert MAML(first_order=True).config()["first_order"] is True


def test_an_unknown_hyper_parameter_is_named() -> None:
    with pytest.raises(ValueError, match=r"'reptile' has no hyper-parameter signal: it takes inner_lr, "):
        get_algorithm("reptile", signal="displacement")


@dataclass(eq=False)
class Constant(MetaAlgorithm):
    """A stand-in algorithm: a zero meta-gradient, the model itself as its adaptation."""

    value: float = 0.0

    def meta_step(self, model: nn.Module, task: Task, loss_fn: LossFn) -> MetaResult:
        return MetaResult({}, self.value)

    def adapt(self, model: nn.Module, data: TaskData, loss_fn: LossFn, steps: int | None = None) -> nn.Module:
        return model


def test_register_algorithm_adds_a_newcomer_and_refuses_a_taken_name(monkeypatch: pytest.MonkeyPatch) -> None:
    table = dict(ALGORITHMS)
    monkeypatch.setattr(registry, "ALGORITHMS", table)
    monkeypatch.setattr(Constant, "name", Constant.name)
    assert register_algorithm("Constant", "flat")(Constant) is Constant
    assert table["constant"] is table["flat"] is Constant and Constant.name == "constant"
    assert get_algorithm("flat", value=2.0).config() == {"name": "constant", "value": 2.0}
    with pytest.raises(ValueError, match="'maml' is already taken by MAML"):
        register_algorithm("maml")(Constant)
    assert table["maml"] is MAML
    assert (
        register_algorithm("constant")(Constant) is Constant
    )  # registering the same class again is harmless
    assert table["constant"] is table["flat"] is Constant and table["maml"] is MAML
