"""Result figures for IQA experiments (matplotlib Agg, no pyplot state); each function writes one PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metalearn_iqa.evaluation.metrics import srocc

__all__ = ["scatter_plot", "srocc_bars", "training_curves"]

ArrayLike = Sequence[float] | np.ndarray
PathLike = str | os.PathLike[str]


def _new_axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A fresh Agg-backed figure with one axes (independent of pyplot's global figure registry)."""
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, out: PathLike) -> Path:
    """Write ``fig`` as PNG to ``out`` (creating parent folders) and return the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _srocc_label(name: str, pred: ArrayLike, target: ArrayLike) -> str:
    """Legend entry ``name (SROCC=0.812)``; 'n/a' when too few points to correlate."""
    try:
        return f"{name} (SROCC={srocc(pred, target):.3f})"
    except ValueError:
        return f"{name} (SROCC=n/a)"


def scatter_plot(
    pred: ArrayLike | Mapping[str, tuple[ArrayLike, ArrayLike]],
    target: ArrayLike | None,
    out: PathLike,
    title: str = "",
    labels: tuple[str, str] | None = None,
) -> Path:
    """Predicted vs true score, SROCC in the legend.

    ``pred`` is one model's predictions (with ``target``), or a dict name -> (pred, target) with
    ``target=None`` for several models. ``labels`` are the (x, y) axis labels.
    """
    if isinstance(pred, Mapping):
        if target is not None:
            raise ValueError("pass target=None when pred is a dict name -> (pred, target)")
        series = dict(pred)
    else:
        if target is None:
            raise ValueError("target is required when pred is a single array")
        series = {"model": (pred, target)}
    fig, ax = _new_axes((6, 6))
    for name, (p, t) in series.items():
        ax.scatter(
            np.asarray(t, float), np.asarray(p, float), s=10, alpha=0.6, label=_srocc_label(name, p, t)
        )
    xlabel, ylabel = labels or ("true score (MOS)", "predicted score")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, out)


def srocc_bars(
    per_type: Mapping[str, Mapping[str, float]], out: PathLike, title: str = "SROCC per held-out distortion"
) -> Path:
    """Grouped bars: ``per_type[distortion_type][model] = srocc``; one x group per type, one colour per model."""
    types = list(per_type)
    models = list(dict.fromkeys(m for scores in per_type.values() for m in scores))
    if not types or not models:
        raise ValueError("per_type must contain at least one distortion type with one model score")
    fig, ax = _new_axes((min(30.0, max(6.0, 1.0 + 0.3 * len(types) * len(models))), 4.5))
    x = np.arange(len(types))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        values = [per_type[t].get(model, np.nan) for t in types]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=model)
    ax.set_xticks(x)
    ax.set_xticklabels(types, rotation=45, ha="right")
    ax.set_ylabel("SROCC")
    ax.set_title(title)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, out)


def training_curves(
    logs: Mapping[str, Sequence[tuple[int, float]]],
    out: PathLike,
    title: str = "training loss",
    log_y: bool = False,
) -> Path:
    """Loss vs iteration, one line per model: ``logs[model] = [(iteration, loss), ...]``."""
    if not logs:
        raise ValueError("logs must contain at least one model")
    fig, ax = _new_axes((7, 4.5))
    for name, points in logs.items():
        if len(points) == 0:
            continue
        its, losses = zip(*sorted(points))
        ax.plot(its, losses, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, out)
