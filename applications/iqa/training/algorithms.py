"""A prior's settings to a core algorithm: each one the algorithm honours, or an error naming both.

The prior's inner loop is the paper's (MetaIQA, Section 3): `inner_steps` steps of Adam, betas
`INNER_BETAS` = (0.9, 0.99), at `inner_lr`. Every registered algorithm gets it through its own
hyper-parameters (`ROUTES`): MetaIQA, MAML, FOMAML and Reptile in their inner loops (Reptile takes 2k steps,
as many as MetaIQA's support and query phases together), the baselines in `adapt`'s fine-tuning (they train
without an inner loop). Where an algorithm has no hyper-parameter for a setting, it either does one thing
by construction (`BUILT_IN`: learn2learn's inner loop is plain SGD, Reptile's signal is the displacement)
or nothing with it. A setting the algorithm cannot honour is a `ValueError` naming the setting and the
algorithm when it differs from its default, and always where the default is the documented inner loop
the algorithm cannot run (learn2learn's algorithms need `inner_optimizer="sgd"`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metalearn.algorithms import MetaAlgorithm, algorithm_class, get_algorithm, hyper_parameter_names

if TYPE_CHECKING:
    from metalearn_iqa.training.prior import PriorConfig

INNER_BETAS = (0.9, 0.99)
"""Adam's betas in the prior's inner loop (the paper's), for every algorithm whose inner loop is Adam."""

ALGORITHM_SETTINGS = ("inner_lr", "inner_steps", "inner_optimizer", "signal", "tasks_per_batch")
"""The `PriorConfig` settings that reach the algorithm (`tasks_per_batch` lives in `PriorConfig.trainer`)."""

TRAINER_SETTINGS = ("tasks_per_batch",)
"""Settings the trainer carries out for every algorithm (it draws that many tasks per outer step)."""

Getter = Callable[["PriorConfig"], Any]

ROUTES: dict[str, tuple[tuple[str, Getter], ...]] = {
    "inner_lr": (("inner_lr", lambda c: c.inner_lr), ("adapt_lr", lambda c: c.inner_lr)),
    "inner_steps": (
        ("inner_steps", lambda c: 2 * c.inner_steps if c.canonical_algorithm == "reptile" else c.inner_steps),
        ("adapt_steps", lambda c: c.inner_steps),
    ),
    "inner_optimizer": (
        ("inner_optimizer", lambda c: c.inner_optimizer),
        ("adapt_optimizer", lambda c: c.inner_optimizer),
    ),
    "signal": (("signal", lambda c: c.signal),),
}
"""Setting -> the hyper-parameters that carry it (an algorithm takes the ones it has) and their values."""

FIXED_ROUTES: tuple[tuple[str, Getter], ...] = (
    ("betas", lambda c: INNER_BETAS),
    ("adapt_betas", lambda c: INNER_BETAS),
)
"""The inner loop's Adam betas: not a setting, the paper's values wherever an algorithm takes them."""


@dataclass(frozen=True)
class BuiltIn:
    """What an algorithm does by construction where it has no hyper-parameter for a setting, and why.

    `binding`: the setting's default is refused too (a documented default the algorithm cannot run).
    """

    value: Any
    reason: str
    binding: bool = False


BUILT_IN: dict[str, dict[str, BuiltIn]] = {
    "metaiqa": {"inner_optimizer": BuiltIn("adam", "its inner loop is Adam by definition", binding=True)},
    "l2l-maml": {
        "inner_optimizer": BuiltIn("sgd", "learn2learn's inner loop is plain SGD", binding=True),
        "signal": BuiltIn("query_gradient", "its signal is the query gradient"),
    },
    "l2l-metasgd": {
        "inner_optimizer": BuiltIn("sgd", "learn2learn's inner loop is plain SGD", binding=True),
        "signal": BuiltIn("query_gradient", "its signal is the query gradient"),
    },
    "maml": {"signal": BuiltIn("query_gradient", "its signal is the query gradient")},
    "fomaml": {"signal": BuiltIn("query_gradient", "its signal is the query gradient")},
    "reptile": {"signal": BuiltIn("displacement", "its signal is the displacement theta - phi")},
    "anil": {"signal": BuiltIn("query_gradient", "its signal is the query gradient")},
    "metasgd": {
        "inner_optimizer": BuiltIn("sgd", "its inner step is SGD at learned per-weight rates", binding=True),
        "signal": BuiltIn("query_gradient", "its signal is the query gradient"),
    },
    "baseline": {"tasks_per_batch": BuiltIn(1, "it trains on one batch per iteration")},
}
"""Canonical algorithm name -> setting -> what it does by construction."""


def setting_value(config: PriorConfig, name: str) -> Any:
    """The value of one of `ALGORITHM_SETTINGS` in `config`."""
    return config.trainer.tasks_per_batch if name == "tasks_per_batch" else getattr(config, name)


def check_honoured(config: PriorConfig, defaults: Mapping[str, Any]) -> None:
    """`ValueError` naming the setting and the algorithm for the first setting of `config` that its
    algorithm cannot honour (`defaults`: each setting's default, to tell a setting asked for)."""
    cls = algorithm_class(config.algorithm)
    name = cls.name
    hyper = set(hyper_parameter_names(cls))
    for setting in ALGORITHM_SETTINGS:
        value, default = setting_value(config, setting), defaults[setting]
        built_in = BUILT_IN.get(name, {}).get(setting)
        if built_in is not None:
            allowed = [built_in.value] if built_in.binding else list(dict.fromkeys([built_in.value, default]))
            if value in allowed:
                continue
            raise ValueError(
                f"algorithm {name!r} cannot honour {setting}={value!r}: {built_in.reason} "
                f"(use {' or '.join(map(repr, allowed))})"
            )
        if setting in TRAINER_SETTINGS or any(param in hyper for param, _ in ROUTES.get(setting, ())):
            continue  # carried by the trainer or by a hyper-parameter
        if value != default:
            raise ValueError(
                f"algorithm {name!r} cannot honour {setting}={value!r}: it has no such setting "
                f"(leave {setting} at {default!r})"
            )


def algorithm_hyper(config: PriorConfig) -> dict[str, Any]:
    """The hyper-parameters `build_algorithm` gives `config.algorithm`: every route it has a parameter for."""
    hyper = set(hyper_parameter_names(algorithm_class(config.algorithm)))
    routes = [route for setting in ROUTES.values() for route in setting] + list(FIXED_ROUTES)
    return {param: get(config) for param, get in routes if param in hyper}


def build_algorithm(config: PriorConfig) -> MetaAlgorithm:
    """The core algorithm registered as `config.algorithm`, with the prior's inner loop (module docstring).

    `PriorConfig` has already refused the settings the algorithm cannot honour (`check_honoured`).
    """
    return get_algorithm(config.algorithm, **algorithm_hyper(config))
