"""Pluggable outer algorithms behind one contract (`MetaAlgorithm`), and a registry to build them by name."""

from __future__ import annotations

from collections.abc import Callable

from metalearn.algorithms.base import LossFn, MetaAlgorithm, MetaResult
from metalearn.algorithms.maml import FOMAML, MAML
from metalearn.algorithms.metaiqa import BilevelAdam, MetaIQA
from metalearn.algorithms.pretrain import Plain, Pretrain
from metalearn.algorithms.reptile import Reptile


def _l2l_maml(**kw: object) -> MetaAlgorithm:
    from metalearn.algorithms.l2l import L2LMAML

    return L2LMAML(**kw)  # type: ignore[arg-type]


def _l2l_metasgd(**kw: object) -> MetaAlgorithm:
    from metalearn.algorithms.l2l import L2LMetaSGD

    return L2LMetaSGD(**kw)  # type: ignore[arg-type]


ALGORITHMS: dict[str, Callable[..., MetaAlgorithm]] = {
    "metaiqa": MetaIQA,
    "bilevel_adam": MetaIQA,
    "maml": MAML,
    "fomaml": FOMAML,
    "reptile": Reptile,
    "baseline": Pretrain,
    "plain": Plain,
    "l2l-maml": _l2l_maml,
    "l2l-metasgd": _l2l_metasgd,
}


def get_algorithm(name: str, **kwargs: object) -> MetaAlgorithm:
    """Build an algorithm by registry name with its keyword hyper-parameters."""
    try:
        factory = ALGORITHMS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}: choose one of {', '.join(ALGORITHMS)}") from None
    return factory(**kwargs)


__all__ = [
    "ALGORITHMS",
    "FOMAML",
    "MAML",
    "BilevelAdam",
    "LossFn",
    "MetaAlgorithm",
    "MetaIQA",
    "MetaResult",
    "Plain",
    "Pretrain",
    "Reptile",
    "get_algorithm",
]
