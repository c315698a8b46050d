"""IQA evaluation metrics: rank and linear correlations between predicted scores and MOS.

Correlations of a constant prediction (or constant target) are undefined: `srocc`, `plcc`, `krcc` and
`plcc_logistic` return NaN and warn, and `evaluate_scores` reports them as None ("undefined" in the CLI),
never as a 0.0 that reads like a real, poor result.

The 4-parameter logistic fit needs enough points to mean anything (and scipy refuses fewer than 4): below
`LOGISTIC_MIN_ITEMS` = 10 images it is skipped and `plcc_logistic` is None (JSON null, "n/a" in tables).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

ArrayLike = Sequence[float] | np.ndarray

__all__ = [
    "evaluate_scores",
    "LOGISTIC_MIN_ITEMS",
    "krcc",
    "logistic4",
    "plcc",
    "plcc_logistic",
    "plcc_logistic_with_flag",
    "rmse",
    "srocc",
]

_MIN_ITEMS = 3
LOGISTIC_MIN_ITEMS = 10


def _validate(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return `pred` and `target` as 1-D float64 arrays; raise ValueError if they cannot be compared."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same length, got {p.size} and {t.size}")
    if p.size < _MIN_ITEMS:
        raise ValueError(f"need at least {_MIN_ITEMS} scores to compute a correlation, got {p.size}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("pred and target must be finite (found NaN or inf)")
    return p, t


def _is_constant(x: np.ndarray) -> bool:
    """True when `x` has no spread, which makes any correlation with it undefined."""
    return bool(np.ptp(x) == 0.0)


def _undefined(p: np.ndarray, t: np.ndarray, name: str, warn: bool = True) -> bool:
    """True (warning once, unless `warn` is off) when a correlation of `p` with `t` is undefined."""
    if not (_is_constant(p) or _is_constant(t)):
        return False
    if warn:
        which = "predictions" if _is_constant(p) else "target scores"
        warnings.warn(f"{name} undefined: the {which} are constant", RuntimeWarning, stacklevel=3)
    return True


def _finite_or_nan(value: float) -> float:
    return float(value) if np.isfinite(value) else float("nan")


def srocc(pred: ArrayLike, target: ArrayLike, warn: bool = True) -> float:
    """Spearman rank-order correlation; NaN (with a warning) if either input is constant."""
    p, t = _validate(pred, target)
    if _undefined(p, t, "SROCC", warn):
        return float("nan")
    return _finite_or_nan(stats.spearmanr(p, t)[0])


def plcc(pred: ArrayLike, target: ArrayLike, warn: bool = True) -> float:
    """Raw Pearson linear correlation (no nonlinear mapping); NaN (with a warning) if either input is constant."""
    p, t = _validate(pred, target)
    if _undefined(p, t, "PLCC", warn):
        return float("nan")
    return _finite_or_nan(stats.pearsonr(p, t)[0])


def krcc(pred: ArrayLike, target: ArrayLike, warn: bool = True) -> float:
    """Kendall rank-order correlation (tau-b); NaN (with a warning) if either input is constant."""
    p, t = _validate(pred, target)
    if _undefined(p, t, "KRCC", warn):
        return float("nan")
    return _finite_or_nan(stats.kendalltau(p, t)[0])


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root mean squared error between raw predictions and targets (same scale assumed)."""
    p, t = _validate(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    z = -(x - b3) / (np.abs(b4) + 1e-12)
    return (b1 - b2) / (1.0 + np.exp(np.clip(z, -500.0, 500.0))) + b2


def _fit_logistic(p: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """Fit `logistic4` mapping predictions to targets; None if the fit fails."""
    sign = 1.0 if stats.pearsonr(p, t)[0] >= 0 else -1.0
    hi, lo = (t.max(), t.min()) if sign > 0 else (t.min(), t.max())
    p0 = [hi, lo, float(np.mean(p)), float(np.std(p)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic4, p, t, p0=p0, maxfev=10000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return None
    return params if np.all(np.isfinite(params)) else None


def plcc_logistic_with_flag(pred: ArrayLike, target: ArrayLike) -> tuple[float | None, bool]:
    """PLCC after the 4-parameter logistic mapping, plus whether the fit succeeded (else raw PLCC).

    None (and False) below `LOGISTIC_MIN_ITEMS` images: the fit is skipped. NaN when either input is
    constant (undefined). Negative when the fitted mapping is decreasing, so the sign agrees with SROCC.
    """
    p, t = _validate(pred, target)
    if p.size < LOGISTIC_MIN_ITEMS:
        return None, False
    if _is_constant(p) or _is_constant(t):
        return float("nan"), False
    params = _fit_logistic(p, t)
    if params is None:
        return plcc(p, t, warn=False), False
    mapped = logistic4(p, *params)
    if _is_constant(mapped):
        return plcc(p, t, warn=False), False
    direction = 1.0 if params[0] >= params[1] else -1.0  # keep the sign of a decreasing mapping
    return direction * _finite_or_nan(stats.pearsonr(mapped, t)[0]), True


def plcc_logistic(pred: ArrayLike, target: ArrayLike) -> float | None:
    """PLCC after the 4-parameter logistic fit; None below 10 images; NaN (with a warning) if either input
    is constant; warns and gives raw PLCC if the fit fails."""
    p, t = _validate(pred, target)
    value, ok = plcc_logistic_with_flag(p, t)
    if value is not None and p.size >= LOGISTIC_MIN_ITEMS:
        _undefined(p, t, "PLCC (logistic)")
    _warn_if_fit_failed(ok, value)
    return value


def _warn_if_fit_failed(ok: bool, value: float | None) -> None:
    """Warn that the logistic fit failed (only when it was attempted and a correlation was defined at all)."""
    if not ok and value is not None and np.isfinite(value):
        warnings.warn(
            "logistic fit failed; plcc_logistic falls back to raw PLCC", RuntimeWarning, stacklevel=3
        )


def evaluate_scores(pred: ArrayLike, target: ArrayLike) -> dict[str, float | None]:
    """All metrics at once (keys: srocc, plcc, plcc_logistic, krcc, rmse, n); warns if the logistic fit fails.

    `plcc_logistic` is None when there are fewer than `LOGISTIC_MIN_ITEMS` images (fit skipped). With constant
    predictions or target scores every correlation is None (undefined) and one warning says which.
    """
    p, t = _validate(pred, target)
    if _undefined(p, t, "SROCC, PLCC and KRCC"):
        fitted = None
        correlations: dict[str, float | None] = dict.fromkeys(("srocc", "plcc", "krcc"))
    else:
        fitted, ok = plcc_logistic_with_flag(p, t)
        _warn_if_fit_failed(ok, fitted)
        correlations = {"srocc": srocc(p, t), "plcc": plcc(p, t), "krcc": krcc(p, t)}
    return {
        "srocc": correlations["srocc"],
        "plcc": correlations["plcc"],
        "plcc_logistic": fitted,
        "krcc": correlations["krcc"],
        "rmse": rmse(p, t),
        "n": int(p.size),
    }
