"""The embedded glyphs: deterministic, disjoint splits, varied drawings of recognisable classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metalearn.episodes import evaluate
from metalearn.task import cycle_batches
from metalearn_fewshot.data.glyphs import GlyphConfig, generate_split, glyph_class, load_glyphs

SMALL = GlyphConfig(classes=(12, 4, 10), instances=6)


def test_same_config_same_glyphs_other_seed_other_glyphs() -> None:
    assert np.array_equal(generate_split("test", SMALL), generate_split("test", SMALL))
    other = GlyphConfig(seed=1, classes=(12, 4, 10), instances=6)
    assert not np.array_equal(generate_split("test", SMALL), generate_split("test", other))


def test_a_class_depends_only_on_its_number() -> None:
    bigger = GlyphConfig(classes=(20, 4, 10), instances=6)
    assert np.array_equal(glyph_class(3, SMALL), glyph_class(3, bigger))
    assert list(SMALL.split_classes("val")) == [12, 13, 14, 15]
    assert list(bigger.split_classes("val")) == [20, 21, 22, 23]  # other numbers: other classes


def test_splits_are_disjoint_and_shaped() -> None:
    train, test = load_glyphs("train", SMALL, cache=False), load_glyphs("test", SMALL, cache=False)
    assert train.images.shape == (72, 1, 28, 28) and test.images.shape == (60, 1, 28, 28)
    assert not set(train.base_names) & set(test.base_names)
    assert train.name == "glyphs/train" and test.base_names[0] == "glyph00016"


def test_drawings_vary_but_stay_recognisable() -> None:
    """Pixel-space nearest prototype, 5-way 1-shot: far above chance (0.2), far from solved."""
    data = load_glyphs("test", GlyphConfig(classes=(1, 1, 40), instances=8), cache=False)
    items = data.images.float()
    assert (items[0] != items[1]).any()  # two drawings of one class differ
    ink = (items > 0).float().mean()
    assert 0.05 < ink < 0.4  # strokes, not blank or filled canvases

    class Nearest:
        def adapt(self, model, data, loss_fn, steps=None):
            x, y = next(cycle_batches(data))
            centres = torch.stack([x[y == c].flatten(1).mean(0) for c in range(5)])
            return _Distances(centres)

    result = evaluate(nn.Identity(), Nearest(), data, episodes=100, ways=5, shots=1, queries=5, seed=0)
    assert 0.3 < result.accuracy < 0.8


class _Distances(nn.Module):
    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.centres = centres

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x.flatten(1), self.centres)


def test_cached_glyphs_equal_generated_ones(tmp_path) -> None:
    fresh = load_glyphs("val", SMALL, cache=tmp_path)
    assert len(list(tmp_path.glob("glyphs-val-28.*.npy"))) == 1
    again = load_glyphs("val", SMALL, cache=tmp_path, rotations=4)
    assert torch.equal(fresh.images, again.images) and again.num_classes == 16
    other = GlyphConfig(seed=5, classes=(12, 4, 10), instances=6)
    assert not torch.equal(load_glyphs("val", other, cache=tmp_path).images, fresh.images)
    assert len(list(tmp_path.glob("glyphs-val-28.*.npy"))) == 1  # the other config replaced the entry


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"classes": (1, 0, 1)}, "positive count per split"),
        ({"strokes": (3, 2)}, "fewest <= most"),
        ({"width": (0.0, 0.1)}, "0 < low <= high"),
        ({"rotation": -1.0}, "rotation must be at least 0"),
    ],
)
def test_bad_configs_are_refused(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        GlyphConfig(**settings)
    with pytest.raises(ValueError, match="unknown glyph split 'dev'"):
        SMALL.split_classes("dev")
