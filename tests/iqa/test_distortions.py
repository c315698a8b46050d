"""KADID-10K distortions: the level table, shapes, determinism, and quality falling strictly with the level."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

from metalearn_iqa.data.distortions import DISTORTIONS, distort, distortion
from metalearn_iqa.data.synthetic import _to_uint8, fr_scores

# KADID-10K's table (shared/reference/kadid_distortions.md). Rows 7, 8, 18 and 25 deviate on purpose, as
# the module docstring explains: 7's negative scale, 8's identity level 1, 18's and 25's signed lists
# that are neither ordered by size nor free of an identity level.
KADID_TABLE = {
    1: (0.1, 0.5, 1, 2, 5),
    2: (1, 2, 4, 6, 8),
    3: (1, 2, 4, 6, 10),
    4: (1, 3, 6, 8, 12),
    5: (1, 3, 6, 8, 12),
    6: (64, 48, 32, 16, 8),
    9: (16, 32, 45, 120, 400),
    10: (43, 36, 24, 7, 4),
    11: (0.001, 0.002, 0.003, 0.005, 0.01),
    12: (0.0001, 0.0005, 0.001, 0.002, 0.003),
    13: (0.001, 0.005, 0.01, 0.02, 0.03),
    14: (0.001, 0.005, 0.01, 0.02, 0.05),
    15: (0.01, 0.03, 0.05, 0.1, 0.15),
    16: (0.1, 0.2, 0.4, 0.7, 1.1),
    17: (0.05, 0.1, 0.2, 0.4, 0.8),
    19: (0.05, 0.1, 0.2, 0.5, 1),
    20: (20, 40, 60, 80, 100),
    21: (0.01, 0.05, 0.1, 0.2, 0.5),
    22: (20, 16, 13, 10, 7),
    23: (2, 4, 6, 8, 10),
    24: (1, 2, 3, 6, 12),
}
CHANGED_ROWS = {7: (0.4, 0.2, 0.1, 0.05, 0), 8: (1.5, 2, 3, 6, 9)}
# Gaussian blur's level 1 is the table's sigma = 0.1 px: its off-centre weights are exp(-50) ~ 2e-22, an
# identity by definition (in float32 and in 8 bits). Every other type must change the 8-bit image.
IDENTITY_AT_LEVEL_1 = {1}
# Types that draw from the rng (angles, noise, patch and block places).
RANDOM_TYPES = {3, 5, 11, 12, 13, 14, 15, 19, 20, 23}
SEED = 123


def _crop(image: np.ndarray, scale: float, h: int = 96, w: int = 128) -> np.ndarray:
    """A centred h x w crop of the photo scaled by `scale`: non-square, so swapped axes would show."""
    image = np.asarray(image)[..., :3]
    small = resize(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)), anti_aliasing=True)
    y0, x0 = (small.shape[0] - h) // 2, (small.shape[1] - w) // 2
    return np.clip(small[y0 : y0 + h, x0 : x0 + w], 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [_crop(data.astronaut(), 0.3), _crop(data.chelsea(), 0.35)]


def test_registry_matches_table():
    assert [d.index for d in DISTORTIONS] == list(range(1, 26))
    assert len({d.name for d in DISTORTIONS}) == 25
    for d in DISTORTIONS:
        assert distortion(d.index) is d
        assert len(d.levels) == 5 and d.parameter and d.group
        if d.index in KADID_TABLE:
            assert d.levels == pytest.approx(KADID_TABLE[d.index]), d.name
    for index, levels in CHANGED_ROWS.items():
        assert distortion(index).levels == pytest.approx(levels)
    # The reordered rows: magnitudes growing with the level, no identity (0) level.
    for index in (18, 25):
        magnitudes = np.array(distortion(index).levels)
        assert np.all(magnitudes > 0) and np.all(np.diff(magnitudes) > 0)
    assert distortion(10).name == "jpeg"


@pytest.mark.parametrize("index", [0, 26, -1, 1.5, "1", None])
def test_bad_index(index, images):
    with pytest.raises(ValueError, match="index"):
        distortion(index)
    with pytest.raises(ValueError, match="index"):
        distort(images[0], index, 1, np.random.default_rng(0))


@pytest.mark.parametrize("level", [0, 6, -1])
def test_bad_level(level, images):
    with pytest.raises(ValueError, match="level"):
        distort(images[0], 11, level, np.random.default_rng(0))


def test_bad_image(images):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="H x W x 3"):
        distort(images[0][..., 0], 1, 1, rng)
    with pytest.raises(ValueError, match="H x W x 3"):
        distort(np.concatenate([images[0], images[0][..., :1]], axis=2), 1, 1, rng)


@pytest.mark.parametrize("kind", DISTORTIONS, ids=lambda d: f"{d.index:02d}-{d.name}")
def test_distortion(kind, images):
    for image in images:
        original = image.copy()
        outs = []
        for level in range(1, 6):
            out = distort(image, kind.index, level, np.random.default_rng(SEED))
            assert out.shape == image.shape and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
            np.testing.assert_array_equal(image, original)  # the input is not modified
            again = distort(image, kind.index, level, np.random.default_rng(SEED))
            np.testing.assert_array_equal(out, again)
            outs.append(_to_uint8(out))
        reference = _to_uint8(image)
        if kind.index not in IDENTITY_AT_LEVEL_1:
            assert not np.array_equal(outs[0], reference), f"{kind.name}: level 1 leaves the image unchanged"
        if kind.index in RANDOM_TYPES:
            other = _to_uint8(distort(image, kind.index, 5, np.random.default_rng(SEED + 1)))
            assert not np.array_equal(other, outs[4]), f"{kind.name}: output ignores the rng"
        scores, _, _ = fr_scores(np.stack(outs), reference)
        assert np.all(np.diff(scores) < 0), f"{kind.name}: scores by level {np.round(scores, 4)}"
