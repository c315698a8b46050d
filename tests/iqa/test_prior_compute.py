"""Every registered algorithm builds a prior with the IQA settings (each honoured or refused by name), and at
the same `epochs` draws the batches its accounting says (equal compute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalearn.algorithms import ALGORITHMS, algorithm_class
from metalearn.task import Batch
from metalearn_iqa.data.kadid10k import load_kadid10k
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images.loader import CropSpec
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.training import tasks as tasks_module
from metalearn_iqa.training.algorithms import BUILT_IN
from metalearn_iqa.training.prior import SUMMARY_FILE, PriorConfig, prior_trainer, train_prior
from metalearn_iqa.training.tasks import TaskConfig

EPOCHS = 2.0
CANONICAL = sorted({cls.name for cls in ALGORITHMS.values() if not cls.needs_class_labels})
"""Every registered algorithm that regresses, once (aliases left out), the learn2learn ones included."""


def _needs(algorithm: str) -> None:
    if algorithm.startswith("l2l-"):
        pytest.importorskip("learn2learn")


@pytest.fixture(scope="module")
def records(kadid_root: Path) -> list[IQARecord]:
    return load_kadid10k(kadid_root)  # 24 images: one epoch is 12 batches of 2


def _inner_optimizer(algorithm: str) -> str:
    """The paper's Adam, or the optimizer an algorithm's inner loop is by construction (learn2learn's,
    Meta-SGD's: SGD)."""
    built_in = BUILT_IN.get(algorithm_class(algorithm).name, {}).get("inner_optimizer")
    return str(built_in.value) if built_in is not None and built_in.binding else "adam"


def _config(algorithm: str) -> PriorConfig:
    """k = 1 inner step but 2 batches per support/query set, so a count that used the wrong one would show."""
    return PriorConfig(
        algorithm=algorithm,
        epochs=EPOCHS,
        inner_steps=1,
        inner_optimizer=_inner_optimizer(algorithm),
        device="cpu",
        trainer=prior_trainer(tasks_per_batch=1 if algorithm == "baseline" else 2),
        task=TaskConfig(crop=32, batch_size=2, batches=2),
        model=ModelConfig(backbone="small", width=4, hidden=8),
    )


def _drawn_batches(
    algorithm: str, records: list[IQARecord], out: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, PriorConfig]:
    """Run `train_prior` and count the random-crop batches actually built."""
    count = 0
    real = tasks_module.CropBatches._batch

    def spy(self: tasks_module.CropBatches, spec: CropSpec) -> Batch:
        nonlocal count
        count += 1
        return real(self, spec)

    monkeypatch.setattr(tasks_module.CropBatches, "_batch", spy)
    config = _config(algorithm)
    train_prior(config, records, out, checkpoint_every=0)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["passes"] == config.passes(len(records))
    return count, config


def test_metaiqa_and_the_baseline_spend_the_same_passes(
    records: list[IQARecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta, meta_config = _drawn_batches("metaiqa", records, tmp_path / "meta", monkeypatch)
    plain, plain_config = _drawn_batches("baseline", records, tmp_path / "plain", monkeypatch)
    assert meta == meta_config.passes(len(records))
    assert plain == plain_config.passes(len(records))
    assert meta == plain == EPOCHS * 12
    assert meta_config.total_iterations(len(records)) < plain_config.total_iterations(len(records))


@pytest.mark.parametrize("algorithm", sorted(set(CANONICAL) - {"metaiqa", "baseline"}))
def test_every_algorithm_draws_what_it_accounts(
    algorithm: str, records: list[IQARecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs(algorithm)
    drawn, config = _drawn_batches(algorithm, records, tmp_path, monkeypatch)
    iterations = config.total_iterations(len(records))
    assert drawn == iterations * config.passes_per_iteration()
    assert drawn == EPOCHS * 12


def test_passes_per_iteration() -> None:
    expected = {"metaiqa": 4, "maml": 4, "fomaml": 4, "reptile": 4, "baseline": 1, "pooled-baseline": 8}
    expected |= {"l2l-maml": 4, "l2l-metasgd": 4, "anil": 4, "metasgd": 4}
    assert {a: _config(a).passes_per_iteration() for a in CANONICAL} == expected
    assert _config("bilevel_adam").passes_per_iteration() == expected["metaiqa"]
    assert _config("baseline").decay_every(24) == 60  # 5 epochs of 12 one-batch steps
    assert _config("metaiqa").decay_every(24) == 15


def test_an_unregistered_algorithm_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown algorithm 'mamll': choose one of .*l2l-metasgd"):
        PriorConfig(algorithm="mamll")
