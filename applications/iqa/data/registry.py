"""Name -> loader registry for the IQA databases, with each database's kind (synthetic or authentic distortions).

Synthetic databases have reference images and distortion types (split by reference); authentic ones do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from metalearn_iqa.data.cid2013 import load_cid2013
from metalearn_iqa.data.kadid10k import load_kadid10k
from metalearn_iqa.data.koniq10k import load_koniq10k
from metalearn_iqa.data.livec import load_livec
from metalearn_iqa.data.records import DatasetError, IQARecord
from metalearn_iqa.data.tid2013 import load_tid2013

SYNTHETIC = "synthetic"
AUTHENTIC = "authentic"


def _load_synthetic(root: str | Path) -> list[IQARecord]:
    """Load the embedded synthetic database; imported lazily so the registry does not depend on it at import."""
    from metalearn_iqa.data.synthetic import load_synthetic

    return load_synthetic(root)


@dataclass(frozen=True)
class DatasetInfo:
    """One registered database: its name, kind (`synthetic`/`authentic`) and loader `root -> records`."""

    name: str
    kind: str
    loader: Callable[[str | Path], list[IQARecord]]


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            DatasetInfo("tid2013", SYNTHETIC, load_tid2013),
            DatasetInfo("kadid10k", SYNTHETIC, load_kadid10k),
            DatasetInfo("koniq10k", AUTHENTIC, load_koniq10k),
            DatasetInfo("livec", AUTHENTIC, load_livec),
            DatasetInfo("cid2013", AUTHENTIC, load_cid2013),
            DatasetInfo("synthetic", SYNTHETIC, _load_synthetic),
        )
    }
)


def dataset_info(name: str) -> DatasetInfo:
    """Return the registry entry for `name` (case-insensitive), or raise DatasetError listing the valid names."""
    info = DATASETS.get(name.strip().lower())
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return info


def dataset_kind(name: str) -> str:
    """Return `synthetic` or `authentic` for a registered database name."""
    return dataset_info(name).kind


def is_synthetic(name: str) -> bool:
    """True for databases with reference images and distortion types (tid2013, kadid10k, synthetic)."""
    return dataset_kind(name) == SYNTHETIC


def load_dataset(name: str, root: str | Path) -> list[IQARecord]:
    """Load the database `name` from its root folder as a list of IQARecords."""
    return dataset_info(name).loader(root)
