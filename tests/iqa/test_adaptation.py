"""The adaptation-curve protocol: which images each prior sees, equal budgets, validation-only rates, stats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats as sps

import metalearn_iqa.protocols.adaptation as adaptation
from metalearn_iqa.data.records import IQARecord
from metalearn_iqa.images.store import ImageStore
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.protocols.adaptation import (
    AdaptationConfig,
    SeedCurve,
    adaptation_curve,
    adaptation_table,
    summarise,
)

TYPES = (2, 5, 7)
REFS = 8
LEVELS = (1, 2, 3)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[IQARecord]:
    """3 types x 8 contents x 3 levels of 32 px images whose brightness falls with the level."""
    root = tmp_path_factory.mktemp("adapt")
    rng = np.random.default_rng(0)
    out = []
    for ref in range(REFS):
        base = rng.integers(0, 200, (32, 32, 3))
        for kind in TYPES:
            for level in LEVELS:
                path = Path(root) / f"I{ref:02d}_{kind:02d}_{level}.png"
                Image.fromarray(np.clip(base + 40 * (4 - level), 0, 255).astype(np.uint8)).save(path)
                score = 1.0 - 0.2 * level - 0.01 * kind + 0.003 * ref
                out.append(IQARecord(str(path), score, score, "toy", kind, level, f"I{ref:02d}"))
    return out


def _split(records: list[IQARecord]) -> tuple[dict[int, list[IQARecord]], dict[int, list[IQARecord]]]:
    """Contents 0-5 adapt, 6-7 test, per type."""
    adapt = {k: [r for r in records if r.distortion == k and int(str(r.reference)[1:]) < 6] for k in TYPES}
    test = {k: [r for r in records if r.distortion == k and int(str(r.reference)[1:]) >= 6] for k in TYPES}
    return adapt, test


def _config(**changes: object) -> AdaptationConfig:
    base: dict[str, object] = dict(
        held_out=TYPES, shots=(0, 2, 4, 8), steps=3, batch_size=4, lr_candidates=(1e-3, 1e-2), crop=32
    )
    base.update(changes)
    return AdaptationConfig(**base)  # type: ignore[arg-type]


def _prior(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone="small", width=4, hidden=8))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(held_out=()), "held_out"),
        (dict(held_out=(2, 2)), "held_out"),
        (dict(shots=(0, 5, 5)), "distinct"),
        (dict(shots=(10, 5)), "increasing"),
        (dict(shots=(0, 1, 5)), "n = 1"),
        (dict(shots=(-1, 5)), "shots"),
        (dict(steps=0), "steps"),
        (dict(batch_size=1), "batch_size"),
        (dict(lr_candidates=()), "lr_candidates"),
        (dict(lr_candidates=(1e-3, -1.0)), "lr_candidates"),
        (dict(lr_candidates=(1e-3, math.nan)), "lr_candidates"),
        (dict(held_out=(2,), lr_candidates=(1e-3, 1e-2)), "at least 2 held-out"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(crop=16), "crop"),
        (dict(weight_decay=-1.0), "weight_decay"),
    ],
)
def test_config_refuses_what_it_cannot_honour(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**changes)


def test_choose_uses_only_the_other_types_validation() -> None:
    validation = {2: {1e-3: 0.9, 1e-2: 0.1}, 5: {1e-3: 0.1, 1e-2: 0.8}, 7: {1e-3: 0.2, 1e-2: 0.7}}
    assert adaptation._choose(validation, 2, (1e-3, 1e-2)) == 1e-2  # type 2's own 0.9 for 1e-3 is ignored
    assert adaptation._choose(validation, 5, (1e-3, 1e-2)) == 1e-3  # (0.9 + 0.2) / 2 > (0.1 + 0.7) / 2
    validation[2][1e-3] = math.nan  # a diverged run is never chosen
    assert adaptation._choose(validation, 5, (1e-3, 1e-2)) == 1e-2


def test_every_prior_sees_the_same_nested_images_from_contents_apart_from_test_and_validation(
    records: list[IQARecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapt, test = _split(records)
    seen: list[tuple[int, list[str], float, int]] = []
    real = adaptation._finetuned

    def spy(model, images, lr, config, seed, store):
        seen.append((id(model), [r.path for r in images], lr, seed))
        return real(model, images, lr, config, seed, store)

    monkeypatch.setattr(adaptation, "_finetuned", spy)
    validations: list[list[IQARecord]] = []  # per held-out type, in order
    real_pool = adaptation._labelled_pool

    def pool_spy(*args):
        pool, validation = real_pool(*args)
        validations.append(validation)
        return pool, validation

    monkeypatch.setattr(adaptation, "_labelled_pool", pool_spy)
    priors = {"a": _prior(0), "b": _prior(1)}
    config = _config()
    adaptation_curve(priors, adapt, test, config, seed=3, store=ImageStore())
    by_prior: dict[int, list[tuple[list[str], float, int]]] = {}
    for prior_id, paths, lr, seed in seen:
        by_prior.setdefault(prior_id, []).append((paths, lr, seed))
    calls_a, calls_b = by_prior.values()
    assert calls_a == calls_b  # same images, rates and crop seeds for both priors: a paired comparison
    assert len(calls_a) == len(TYPES) * 3 * 2  # types x (n > 0) x rates
    test_refs = {r.reference for k in TYPES for r in test[k]}
    for kind_index, kind in enumerate(TYPES):
        sets = [calls_a[(kind_index + len(TYPES) * i) * 2][0] for i in range(3)]  # n = 2, 4, 8
        assert [len(s) for s in sets] == [2, 4, 8]
        assert sets[0] == sets[1][:2] and sets[1] == sets[2][:4]  # nested
        chosen = {r.path: r for r in records}
        refs = {chosen[p].reference for p in sets[2]}
        validation_refs = {r.reference for r in validations[kind_index]}
        assert validation_refs and all(r.distortion == kind for r in validations[kind_index])
        assert all(chosen[p].distortion == kind for p in sets[2])
        assert not refs & test_refs and not refs & validation_refs


def test_curve_is_deterministic_and_leaves_priors_alone(records: list[IQARecord]) -> None:
    adapt, test = _split(records)
    prior = _prior(0)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    config = _config(lr_candidates=(1e-3,))
    one = adaptation_curve({"p": prior}, adapt, test, config, seed=1, store=ImageStore())
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())
    assert set(one.srocc["p"]) == {0, 2, 4, 8} and all(set(v) == set(TYPES) for v in one.srocc["p"].values())
    assert one.lr["p"][0] == {k: None for k in TYPES} and one.lr["p"][8] == {k: 1e-3 for k in TYPES}
    # n = 0 is the prior itself on the test contents
    from metalearn_iqa.evaluation.predict import predict_records

    pred = predict_records(prior, test[5])
    assert one.srocc["p"][0][5] == pytest.approx(sps.spearmanr(pred, [r.score for r in test[5]])[0])
    # run again, with an identical twin: the same readings (deterministic, and nothing but the prior differs)
    twin = adaptation_curve({"p": prior, "q": _prior(0)}, adapt, test, config, seed=1, store=ImageStore())
    assert twin.srocc["p"] == twin.srocc["q"] == one.srocc["p"]
    assert adaptation_curve({"p": prior}, adapt, test, config, seed=2, store=ImageStore()).srocc != one.srocc


def test_budget_is_the_same_steps_whatever_n(
    records: list[IQARecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapt, test = _split(records)
    steps: list[tuple[int, int]] = []

    class CountingAdam(torch.optim.Adam):
        def step(self, closure=None):
            steps[-1] = (steps[-1][0], steps[-1][1] + 1)
            return super().step(closure)

    real = adaptation._finetuned

    def spy(model, images, lr, config, seed, store):
        steps.append((len(images), 0))
        return real(model, images, lr, config, seed, store)

    monkeypatch.setattr(adaptation, "_finetuned", spy)
    monkeypatch.setattr(torch.optim, "Adam", CountingAdam)
    adaptation_curve({"p": _prior(0)}, adapt, test, _config(steps=5, lr_candidates=(1e-3,)), 0, ImageStore())
    assert sorted({n for n, _ in steps}) == [2, 4, 8]
    assert all(count == 5 for _, count in steps)


def test_a_diverging_rate_is_never_chosen(records: list[IQARecord]) -> None:
    adapt, test = _split(records)
    curve = adaptation_curve(
        {"p": _prior(0)}, adapt, test, _config(shots=(4,), lr_candidates=(1e-3, 1e30)), 0, ImageStore()
    )
    assert curve.lr["p"][4] == {k: 1e-3 for k in TYPES}
    assert all(math.isnan(curve.validation["p"][4][k][1e30]) for k in TYPES)


def _curve(seed: int, meta: list[float], base: list[float]) -> SeedCurve:
    """A seed whose two priors read `meta` and `base` at n = 0 and 5 (types 2 and 5 averaged)."""
    curve = SeedCurve(seed)
    for name, values in (("metaiqa", meta), ("baseline", base)):
        curve.srocc[name] = {n: {2: v - 0.01, 5: v + 0.01} for n, v in zip((0, 5), values)}
    return curve


def test_summary_schema_means_cis_and_verdicts() -> None:
    curves = [_curve(0, [0.3, 0.60], [0.3, 0.50]), _curve(1, [0.4, 0.72], [0.5, 0.60]),
              _curve(2, [0.2, 0.55], [0.1, 0.47])]  # fmt: skip
    report = summarise(curves)
    assert report["seeds"] == [0, 1, 2]
    for prior in ("metaiqa", "baseline"):
        for n in (0, 5):
            entry = report["adaptation"][prior][n]
            assert set(entry) == {"mean", "ci95", "per_seed"} and len(entry["per_seed"]) == 3
            assert entry["mean"] == pytest.approx(np.mean(entry["per_seed"]))
            low, high = sps.t.interval(
                0.95, 2, loc=np.mean(entry["per_seed"]), scale=sps.sem(entry["per_seed"])
            )
            assert entry["ci95"] == pytest.approx((high - low) / 2)
    assert report["paired"][5]["per_seed"] == pytest.approx([0.10, 0.12, 0.08])
    assert report["verdicts"][5] == "metaiqa better"  # +0.10 ± 0.05
    assert report["verdicts"][0] == "not distinguishable at this budget"  # 0, -0.1, +0.1
    table = adaptation_table(report)
    assert "metaiqa better" in table and "not distinguishable" in table and "0.623 ±" in table


def test_plot_is_written(tmp_path: Path) -> None:
    report = summarise([_curve(0, [0.3, 0.6], [0.3, 0.5]), _curve(1, [0.4, 0.7], [0.5, 0.6])])
    path = adaptation.adaptation_plot(report, tmp_path / "curve.png")
    assert path.stat().st_size > 1000
