"""The one algorithm registry: names to algorithm classes, filled by the `register_algorithm` decorator.

The core's algorithms register themselves when `metalearn.algorithms` is imported; a third-party algorithm
joins the same table by decorating its class (see docs/core.md), and `get_algorithm` builds either by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from metalearn.algorithms.base import MetaAlgorithm, hyper_parameter_names

AlgorithmClass = TypeVar("AlgorithmClass", bound=type[MetaAlgorithm])

ALGORITHMS: dict[str, type[MetaAlgorithm]] = {}
"""Registry name (lower case) -> algorithm class; aliases map to the same class."""


def register_algorithm(name: str, *aliases: str) -> Callable[[AlgorithmClass], AlgorithmClass]:
    """Class decorator: make an algorithm buildable as `get_algorithm(name, **hyper)` (and by `aliases`).

    The class's `name` attribute becomes `name`, so its `config()` names it the way the registry does.
    A name already taken by another class is a `ValueError`: two algorithms never share a name.
    """

    def register(cls: AlgorithmClass) -> AlgorithmClass:
        keys = [key.lower() for key in (name, *aliases)]
        for key in keys:
            if ALGORITHMS.get(key, cls) is not cls:
                raise ValueError(f"algorithm name {key!r} is already taken by {ALGORITHMS[key].__name__}")
        cls.name = keys[0]
        for key in keys:
            ALGORITHMS[key] = cls
        return cls

    return register


def algorithm_class(name: str) -> type[MetaAlgorithm]:
    """The class registered under `name` (any case); `ValueError` listing the choices if there is none."""
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}: choose one of {', '.join(ALGORITHMS)}") from None


def get_algorithm(name: str, **hyper: object) -> MetaAlgorithm:
    """Build an algorithm by registry name with its keyword hyper-parameters.

    `get_algorithm(**algorithm.config())`-style round trips hold for every registered algorithm:
    `config()` lists exactly the constructor's hyper-parameters.
    """
    cls = algorithm_class(name)
    known = hyper_parameter_names(cls)
    unknown = sorted(set(hyper) - set(known))
    if unknown and dataclasses.is_dataclass(cls):  # a plain class's own __init__ says what it takes
        raise ValueError(
            f"algorithm {name!r} has no hyper-parameter {', '.join(unknown)}: it takes {', '.join(known) or 'none'}"
        )
    return cls(**hyper)
