"""KADID-10K distortions: shapes, determinism, and quality falling strictly with the level."""

from __future__ import annotations

import numpy as np
import pytest

from metalearn_iqa.data.distortions import DISTORTIONS, distort, distortion
from metalearn_iqa.data.synthetic import _to_uint8, fr_scores, reference_image

SIZE = 96


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [reference_image("astronaut", SIZE), reference_image("coffee", SIZE)]


def test_registry_is_complete():
    assert [d.index for d in DISTORTIONS] == list(range(1, 26))
    assert len({d.name for d in DISTORTIONS}) == 25
    for d in DISTORTIONS:
        assert len(d.levels) == 5 and d.parameter and d.group
    assert distortion(10).name == "jpeg"
    with pytest.raises(ValueError):
        distortion(26)


def test_bad_arguments(images):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        distort(images[0], 1, 6, rng)
    with pytest.raises(ValueError):
        distort(images[0][..., 0], 1, 1, rng)


@pytest.mark.parametrize("kind", DISTORTIONS, ids=lambda d: f"{d.index:02d}-{d.name}")
def test_distortion(kind, images):
    for image in images:
        outs = []
        for level in range(1, 6):
            out = distort(image, kind.index, level, np.random.default_rng(123))
            assert out.shape == image.shape and out.dtype == np.float32
            assert out.min() >= 0.0 and out.max() <= 1.0
            again = distort(image, kind.index, level, np.random.default_rng(123))
            np.testing.assert_array_equal(out, again)
            outs.append(_to_uint8(out))
        scores, _, _ = fr_scores(np.stack(outs), _to_uint8(image))
        assert np.all(np.diff(scores) < 0), f"{kind.name}: scores by level {np.round(scores, 4)}"
