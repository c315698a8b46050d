"""Tests for metalearn_iqa.evaluation.metrics against scipy and on the error paths."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from metalearn_iqa.evaluation.metrics import (
    evaluate_scores,
    krcc,
    plcc,
    plcc_logistic,
    plcc_logistic_with_flag,
    rmse,
    srocc,
)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, size=60)
    pred = target + rng.normal(0, 0.2, size=60)
    return pred, target


def test_matches_scipy(data: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = data
    assert srocc(pred, target) == pytest.approx(stats.spearmanr(pred, target)[0])
    assert plcc(pred, target) == pytest.approx(stats.pearsonr(pred, target)[0])
    assert krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target)[0])
    assert rmse(pred, target) == pytest.approx(np.sqrt(np.mean((pred - target) ** 2)))


def test_accepts_lists(data: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = data
    assert srocc(list(pred), list(target)) == pytest.approx(srocc(pred, target))


def test_evaluate_scores_keys_and_values(data: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = data
    out = evaluate_scores(pred, target)
    assert set(out) == {"srocc", "plcc", "plcc_logistic", "krcc", "rmse", "n"}
    assert out["n"] == 60
    assert out["srocc"] == pytest.approx(srocc(pred, target))
    fitted, raw = out["plcc_logistic"], out["plcc"]
    assert fitted is not None and raw is not None
    assert fitted >= raw - 1e-6  # the fit can only help on noisy linear data
    assert all(isinstance(v, float | int) for v in out.values())


def test_monotone_nonlinear_mapping() -> None:
    x = np.linspace(-3, 3, 50)
    y = 1.0 / (1.0 + np.exp(-2.5 * x))  # monotone, strongly nonlinear
    assert srocc(x, y) == pytest.approx(1.0)
    assert krcc(x, y) == pytest.approx(1.0)
    value, ok = plcc_logistic_with_flag(x, y)
    assert ok and value is not None
    assert value == pytest.approx(1.0, abs=1e-6)
    assert value > plcc(x, y) + 0.02


def test_decreasing_mapping_keeps_sign() -> None:
    x = np.linspace(0, 1, 40)
    y = 1.0 - x**3
    assert srocc(x, y) == pytest.approx(-1.0)
    fitted = plcc_logistic(x, y)
    assert fitted is not None and fitted < -0.99


def test_constant_prediction_is_undefined_not_zero() -> None:
    target = np.arange(12.0)
    pred = np.full(12, 0.3)
    with pytest.warns(RuntimeWarning, match="undefined: the predictions are constant") as caught:
        out = evaluate_scores(pred, target)
    assert len(caught) == 1  # one warning, no scipy ConstantInputWarning
    assert out["srocc"] is out["plcc"] is out["plcc_logistic"] is out["krcc"] is None
    rmse_value = out["rmse"]
    assert rmse_value is not None and np.isfinite(rmse_value)


@pytest.mark.parametrize("metric", [srocc, plcc, krcc, plcc_logistic])
def test_each_correlation_of_constant_scores_is_nan(metric) -> None:
    with pytest.warns(RuntimeWarning, match="target scores are constant"):
        assert np.isnan(metric(np.arange(12.0), np.full(12, 0.5)))


def test_failed_fit_falls_back_with_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from metalearn_iqa.evaluation import metrics

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no convergence")

    monkeypatch.setattr(metrics.optimize, "curve_fit", boom)
    x = np.linspace(0, 1, 20)
    y = x**2
    value, ok = plcc_logistic_with_flag(x, y)
    assert not ok and value == pytest.approx(plcc(x, y))
    with pytest.warns(RuntimeWarning, match="falls back to raw PLCC"):
        assert plcc_logistic(x, y) == pytest.approx(plcc(x, y))


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length"),
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "finite"),
        ([1.0, 2.0, 3.0], [1.0, np.inf, 3.0], "finite"),
    ],
)
@pytest.mark.parametrize("fn", [srocc, plcc, plcc_logistic, krcc, rmse, evaluate_scores])
def test_invalid_inputs(
    fn: Callable[[list[float], list[float]], object], pred: list[float], target: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        fn(pred, target)


@pytest.mark.parametrize("n", [3, 9])
def test_logistic_fit_is_skipped_below_ten_images(n: int) -> None:
    x = np.linspace(0, 1, n)
    y = x**2 + 0.01 * np.sin(7 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skipping is not a failed fit: no warning
        out = evaluate_scores(x, y)
        assert plcc_logistic(x, y) is None
    assert out["plcc_logistic"] is None and out["n"] == n
    assert out["srocc"] == pytest.approx(1.0) and out["plcc"] == pytest.approx(plcc(x, y))
    assert plcc_logistic_with_flag(x, y) == (None, False)


def test_logistic_fit_runs_from_ten_images() -> None:
    x = np.linspace(-3, 3, 10)
    y = 1.0 / (1.0 + np.exp(-2.5 * x))
    value, ok = plcc_logistic_with_flag(x, y)
    assert ok and value == pytest.approx(1.0, abs=1e-4)
    assert evaluate_scores(x, y)["plcc_logistic"] == pytest.approx(value)


def test_skipped_metric_reads_n_a_in_tables() -> None:
    from metalearn_iqa.protocols.report import markdown_table, mean_std_if_all

    assert mean_std_if_all([0.5, None]) == (None, None)
    assert mean_std_if_all([0.5, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    table = markdown_table(["a", "b"], [(None, 0.25)])
    assert table.splitlines()[-1] == "| n/a | 0.2500 |"
