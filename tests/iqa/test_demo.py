"""The demo's protocol: content split, equal compute, the report scripts read, the verdict in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalearn_iqa.data.synthetic import SyntheticConfig, generate_synthetic, load_synthetic
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.protocols.demo import run_demo, verdict
from metalearn_iqa.protocols.heldout import DemoConfig, split_contents

SYNTHETIC = SyntheticConfig(
    size=64,
    references=(
        "astronaut",
        "coffee:nw",
        "chelsea",
        "rocket",
        "coffee:se",
        "astronaut:se",
        "chelsea:nw",
        "motorcycle",
    ),
    seed=1,
    types=(1, 10, 13, 16),
    levels=(1, 3, 5),
)


def _config(**changes: object) -> DemoConfig:
    base = dict(
        held_out=(10,),
        seeds=(0, 1),
        epochs=1.0,
        rate_candidates={"baseline": (1e-3, 3e-3), "metaiqa": (2e-3,)},
        crop=32,
        batch_size=4,
        finetune_epochs=1,
        threads=1,
        model=ModelConfig(backbone="small", width=4, hidden=8),
        synthetic=SYNTHETIC,
    )
    base.update(changes)
    return DemoConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> Path:
    base = tmp_path_factory.mktemp("data")
    monkeypatch_module.setenv("METALEARN_DATA", str(base))
    from metalearn_iqa.data.synthetic import default_root

    return generate_synthetic(default_root(SYNTHETIC), SYNTHETIC, progress=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_split_keeps_every_content_on_one_side_and_types_apart(database: Path) -> None:
    records = load_synthetic(database)
    split = split_contents(records, _config(), seed=0)
    train_refs = {r.reference for r in split.train} | {r.reference for rs in split.adapt.values() for r in rs}
    test_refs = {r.reference for r in split.seen_test} | {
        r.reference for rs in split.unseen_test.values() for r in rs
    }
    assert train_refs and test_refs and not train_refs & test_refs
    assert {r.distortion for r in split.train} == {1, 13, 16} == {r.distortion for r in split.seen_test}
    assert set(split.adapt) == set(split.unseen_test) == {10}
    assert len(split.train) + len(split.seen_test) + len(split.adapt[10]) + len(split.unseen_test[10]) == len(
        records
    )
    other = split_contents(records, _config(), seed=1)
    assert {r.reference for r in other.train} != {r.reference for r in split.train} or len(records) < 2


def test_demo_report_holds_what_scripts_read_at_equal_passes(database: Path, tmp_path: Path) -> None:
    report = run_demo(_config(), tmp_path / "demo")
    written = json.loads((tmp_path / "demo" / "demo.json").read_text())
    results = written["results"]
    assert set(results) == {"metaiqa", "baseline"}
    for entry in results.values():
        for key in ("seen_srocc", "unseen_srocc_zero_shot", "unseen_srocc_finetuned"):
            assert -1.0 <= entry[key] <= 1.0
        assert entry["passes"] > 0
    assert results["metaiqa"]["passes"] == results["baseline"]["passes"]
    assert written["rates"]["baseline"] in (1e-3, 3e-3) and written["rates"]["metaiqa"] == 2e-3
    assert set(written["rate_search"]["baseline"]) == {"0.001", "0.003"}
    assert [r["seed"] for r in written["runs"]["metaiqa"]] == [0, 1]
    assert "seed spread" in report["table"]
    for plot in ("scatter.png", "srocc_per_type.png", "training_curves.png"):
        assert (tmp_path / "demo" / plot).stat().st_size > 0


def _summary(meta: list[float], base: list[float]) -> dict:
    return {
        "metaiqa": {"unseen_finetuned_per_seed": meta},
        "baseline": {"unseen_finetuned_per_seed": base},
    }


def test_verdict_says_whether_the_gap_beats_the_seed_spread() -> None:
    assert "larger than the spread, in favour of metaiqa" in verdict(
        _summary([0.6, 0.62, 0.61], [0.5, 0.5, 0.52])
    )
    assert "in favour of baseline" in verdict(_summary([0.5, 0.5], [0.6, 0.61]))
    assert "NOT larger than the spread" in verdict(_summary([0.6, 0.4], [0.5, 0.5]))
    assert "one seed" in verdict(_summary([0.6], [0.5]))
    assert "undefined" in verdict(_summary([float("nan"), 0.6], [0.5, 0.5]))  # a constant predictor


def test_demo_readings_of_a_constant_predictor_are_undefined() -> None:
    from metalearn_iqa.protocols.demo import _f3, _mean_std
    from metalearn_iqa.protocols.heldout import nan_if_undefined

    mean, std = _mean_std([0.5, nan_if_undefined(None)])
    assert _f3(mean) == _f3(std) == "undefined" and _f3(0.25) == "0.250"


def test_a_rate_that_diverges_is_never_chosen(
    kadid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalearn import DivergedError
    from metalearn_iqa.data.registry import load_dataset
    from metalearn_iqa.images.store import ImageStore
    from metalearn_iqa.protocols import heldout

    diverging = {"1e-05", "0.003"}

    def train(prior, records, run_dir, resume=False, store=None, overwrite=False):
        if Path(run_dir).name.split("-", 1)[1] in diverging:
            raise DivergedError("training diverged at iteration 1", 1)
        return object(), []

    monkeypatch.setattr(heldout, "train_prior", train)
    monkeypatch.setattr(heldout, "evaluate_records", lambda *args: ({"srocc": 0.5}, None))
    records = load_dataset("kadid10k", str(kadid_root))
    config = _config(rate_candidates={"baseline": (1e-5, 1e-3, 3e-3)}, algorithms=("baseline",))
    rates, scores = heldout.choose_rates(records, config, tmp_path, ImageStore())
    assert rates == {"baseline": 1e-3}
    assert scores == {"baseline": {"1e-05": None, "0.001": 0.5, "0.003": None}}
    diverging.add("0.001")
    with pytest.raises(DivergedError, match="baseline: training diverged at every candidate rate"):
        heldout.choose_rates(records, config, tmp_path, ImageStore())
