"""Tests for gradient maps and result plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_iqa.evaluation.saliency import gradient_map, save_gradient_map
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model
from metalearn_iqa.protocols.plots import scatter_plot, srocc_bars, training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("head", ["paper", "authors"])
def test_gradient_map_leaves_model_untouched(head: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(head=head, hidden=16))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(3, 48, 40, generator=torch.Generator().manual_seed(1))
    grad = gradient_map(model, image)
    assert grad.shape == (48, 40)
    assert float(grad.min()) >= 0.0 and float(grad.max()) == pytest.approx(1.0)
    assert model.training  # previous mode restored
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # incl. BatchNorm running statistics


def test_gradient_map_rejects_batches() -> None:
    model = build_model(ModelConfig(hidden=8))
    with pytest.raises(ValueError, match="one image"):
        gradient_map(model, torch.zeros(2, 3, 32, 32))


def test_save_gradient_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, size=(50, 60, 3), dtype=np.uint8))
    grad = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))  # resized to the image
    out = save_gradient_map(image, grad, tmp_path / "maps" / "g.png", title="test")
    assert _is_png(Path(out))


def test_scatter_plot_single_and_multi(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(size=30)
    pred = target + rng.normal(0, 0.1, size=30)
    single = scatter_plot(pred, target, tmp_path / "s1.png", "one model")
    multi = scatter_plot(
        {"meta": (pred, target), "baseline": (pred[::-1], target)},
        None,
        tmp_path / "s2.png",
        "two models",
        labels=("MOS", "prediction"),
    )
    assert _is_png(Path(single)) and _is_png(Path(multi))
    with pytest.raises(ValueError):
        scatter_plot({"m": (pred, target)}, target, tmp_path / "bad.png", "bad")


def test_srocc_bars(tmp_path: Path) -> None:
    per_type = {
        "JPEG": {"MetaIQA": 0.9, "baseline": 0.8},
        "blur": {"MetaIQA": 0.85, "baseline": 0.7},
        "noise": {"MetaIQA": 0.6},  # a missing model score is left blank
    }
    assert _is_png(Path(srocc_bars(per_type, tmp_path / "bars.png")))


def test_training_curves(tmp_path: Path) -> None:
    logs = {"meta": [(i, 1.0 / (i + 1)) for i in range(20)], "baseline": [(i, 0.5) for i in range(0, 20, 5)]}
    assert _is_png(Path(training_curves(logs, tmp_path / "curves.png", log_y=True)))
