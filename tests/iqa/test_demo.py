"""The demo's protocol: content split, equal compute, the report scripts read, the verdict in words."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from metalearn.stats import NOT_DISTINGUISHABLE, ci_half_width
from metalearn_iqa.data.synthetic import SyntheticConfig, generate_synthetic, load_synthetic
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.protocols.demo import run_demo
from metalearn_iqa.protocols.demo_report import _verdict, seen_target_note
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
        shots=(0, 2, 4),
        adapt_steps=2,
        adapt_lr_candidates=(1e-3,),
        threads=1,
        workers=1,
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


def _check_stats(entry: dict) -> None:
    """A reported {"mean", "ci95", "per_seed"}: the mean of its per-seed values and their t half-width."""
    assert entry["mean"] == pytest.approx(sum(entry["per_seed"]) / len(entry["per_seed"]))
    assert entry["ci95"] == pytest.approx(ci_half_width(entry["per_seed"]))


def test_demo_report_holds_the_adaptation_curve_and_paired_differences(
    database: Path, tmp_path: Path
) -> None:
    report = run_demo(_config(), tmp_path / "demo")
    written = json.loads((tmp_path / "demo" / "demo.json").read_text())
    results = written["results"]
    assert set(results) == {"metaiqa", "baseline"} and written["seeds"] == [0, 1]
    for entry in results.values():
        for key in ("seen_srocc", "unseen_srocc_zero_shot", "unseen_srocc_finetuned"):
            assert -1.0 <= entry[key] <= 1.0
        assert entry["passes"] > 0 and len(entry["seen_srocc_per_seed"]) == 2
    assert results["metaiqa"]["passes"] == results["baseline"]["passes"]
    assert written["rates"]["baseline"] in (1e-3, 3e-3) and written["rates"]["metaiqa"] == 2e-3
    assert set(written["rate_search"]["baseline"]) == {"0.001", "0.003"}
    for algorithm in ("metaiqa", "baseline"):
        curve = written["adaptation"][algorithm]
        assert list(curve) == ["0", "2", "4"]
        for n, entry in curve.items():
            assert len(entry["per_seed"]) == 2
            _check_stats(entry)
            runs = written["runs"][
                algorithm
            ]  # per seed, one held-out type: its per-seed value is that type's
            assert entry["per_seed"] == pytest.approx([r["adaptation"][n]["10"] for r in runs])
        assert results[algorithm]["unseen_srocc_finetuned"] == pytest.approx(curve["4"]["mean"])
        assert results[algorithm]["unseen_srocc_zero_shot"] == pytest.approx(curve["0"]["mean"])
    for n, entry in written["paired"].items():
        _check_stats(entry)
        meta, base = written["adaptation"]["metaiqa"][n], written["adaptation"]["baseline"][n]
        assert entry["per_seed"] == pytest.approx([a - b for a, b in zip(meta["per_seed"], base["per_seed"])])
    assert "Verdict" in report["table"] and written["seen_target_note"] in report["table"]
    for plot in ("adaptation.png", "srocc_per_type.png", "training_curves.png"):
        assert (tmp_path / "demo" / plot).stat().st_size > 0


def test_seeds_in_worker_processes_give_the_same_numbers(database: Path, tmp_path: Path) -> None:
    """Same seed, same thread count: the same priors and readings whether seeds run in one process or two."""
    config = _config(rate_candidates={}, seeds=(0, 1))
    one = run_demo(config, tmp_path / "one")
    two = run_demo(_config(rate_candidates={}, seeds=(0, 1), workers=2), tmp_path / "two")
    assert one["adaptation"] == two["adaptation"] and one["paired"] == two["paired"]
    assert [r["seen_srocc"] for r in one["runs"]["metaiqa"]] == [
        r["seen_srocc"] for r in two["runs"]["metaiqa"]
    ]


def _summary(diffs: dict[int, tuple[float, float]]) -> dict:
    paired = {n: {"mean": m, "ci95": c, "per_seed": []} for n, (m, c) in diffs.items()}
    verdicts = {
        n: NOT_DISTINGUISHABLE if abs(m) <= c else ("metaiqa better" if m > 0 else "baseline better")
        for n, (m, c) in diffs.items()
    }
    return {"paired": paired, "verdicts": verdicts}


def test_verdict_follows_the_paired_confidence_interval() -> None:
    text = _verdict(_summary({5: (0.10, 0.05), 10: (0.02, 0.05), 20: (-0.08, 0.03)}))
    assert "n = 5: metaiqa better (+0.100 ± 0.050)" in text and "n = 20: baseline better" in text
    assert "not distinguishable at n = 10" in text
    assert "not distinguishable at this budget at any n" in _verdict(
        _summary({5: (0.1, 0.2), 10: (0.0, 0.1)})
    )
    assert _verdict({"paired": {}, "verdicts": {}}) == ""


def test_seen_target_note_names_the_priors_below_it() -> None:
    results = {"metaiqa": {"seen_srocc": 0.4, "passes": 990}, "baseline": {"seen_srocc": 0.65, "passes": 990}}
    note = seen_target_note(results, 0.6)
    assert note.startswith("metaiqa below seen-type SROCC 0.6") and "half its passes" in note
    results["baseline"]["seen_srocc"] = math.nan  # undefined counts as not reaching it
    assert "metaiqa, baseline below" in seen_target_note(results, 0.6)
    results = {"baseline": {"seen_srocc": 0.7, "passes": 990}}
    assert seen_target_note(results, 0.6).startswith("every prior reaches")


def test_demo_config_refuses_what_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="shots"):
        _config(shots=(0, 1, 5))
    with pytest.raises(ValueError, match="seeds"):
        _config(seeds=(1, 1))
    with pytest.raises(ValueError, match="workers"):
        _config(workers=0)


def test_demo_readings_of_a_constant_predictor_are_undefined() -> None:
    from metalearn_iqa.protocols.demo import _f3
    from metalearn_iqa.protocols.heldout import nan_if_undefined

    assert _f3(nan_if_undefined(None)) == "undefined" and _f3(0.25) == "0.250"


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
