"""Pluggable outer algorithms behind one contract (`MetaAlgorithm`), and the one registry to build them by name.

Importing this package registers every core algorithm; the learn2learn ones import learn2learn only when
they are built, so the core works without the optional extra.
"""

from __future__ import annotations

from metalearn.algorithms.anil import ANIL
from metalearn.algorithms.base import (
    ALGORITHM_PREFIX,
    LossFn,
    MetaAlgorithm,
    MetaResult,
    algorithm_key,
    hyper_parameter_names,
)
from metalearn.algorithms.l2l import L2LMAML, L2LMetaSGD
from metalearn.algorithms.maml import FOMAML, MAML
from metalearn.algorithms.metaiqa import BilevelAdam, MetaIQA
from metalearn.algorithms.metasgd import MetaSGD
from metalearn.algorithms.pretrain import Plain, Pretrain
from metalearn.algorithms.protonet import ProtoNet, PrototypeClassifier
from metalearn.algorithms.registry import ALGORITHMS, algorithm_class, get_algorithm, register_algorithm
from metalearn.algorithms.reptile import Reptile

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_PREFIX",
    "ANIL",
    "FOMAML",
    "L2LMAML",
    "MAML",
    "BilevelAdam",
    "L2LMetaSGD",
    "LossFn",
    "MetaAlgorithm",
    "MetaIQA",
    "MetaResult",
    "MetaSGD",
    "Plain",
    "Pretrain",
    "ProtoNet",
    "PrototypeClassifier",
    "Reptile",
    "algorithm_class",
    "algorithm_key",
    "get_algorithm",
    "hyper_parameter_names",
    "register_algorithm",
]
