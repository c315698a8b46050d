"""Glyphs: the embedded few-shot default, procedurally drawn characters that need no download.

Like Omniglot, a class is a character made of a few pen strokes and an item is one drawing of it:

- A class (seeded by `(seed, class number)`) is 2 to 4 strokes, each a cubic Bezier curve (or, one time in
  four, a straight line) with control points in the middle of the canvas; a stroke starts, one time in
  two, where an earlier one ends, so strokes join the way pen strokes do.
- An item redraws it: each control point moves by Gaussian noise, the whole glyph goes through a small
  random affine map (rotation, scale, shear, shift), and the pen width is drawn anew.
- Rendering: Pillow lines with round joints and caps on a canvas `supersample` times larger, reduced by
  box-filter averaging (anti-aliased); white strokes on black, uint8, `size` x `size`, one channel (the
  same convention as the Omniglot loader here: background 0, ink 255).

Splits of disjoint classes: `train` (classes 0..999), `val` (1000..1199), `test` (1200..1499) with the
default `GlyphConfig`, 20 items each. A class depends only on `(seed, class number)`, so a split is the same
whatever the other splits' sizes. About 3 s for all 30,000 items on one core; cached afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import PIL
from PIL import Image, ImageDraw

from metalearn.episodes import ClassDataset
from metalearn_fewshot.data.cache import CacheOption, Decoded, cache_folder, load_cached

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GlyphConfig:
    """How glyphs are drawn. Lengths are fractions of the canvas side; angles in degrees."""

    seed: int = 0
    classes: tuple[int, int, int] = (1000, 200, 300)  # train, val, test
    instances: int = 20
    size: int = 28
    strokes: tuple[int, int] = (2, 4)  # fewest, most strokes per class
    point_jitter: float = 0.04  # sd of each control point's per-item move
    rotation: float = 10.0  # sd of the per-item rotation
    scale: float = 0.1  # sd of the per-item log scale
    shear: float = 0.1  # sd of the per-item shear
    shift: float = 0.05  # sd of the per-item translation
    width: tuple[float, float] = (0.05, 0.09)  # pen width range
    supersample: int = 4

    def __post_init__(self) -> None:
        if len(self.classes) != len(SPLITS) or min(self.classes) < 1:
            raise ValueError(f"classes needs a positive count per split {SPLITS}, got {self.classes}")
        if self.instances < 1 or self.size < 8 or self.supersample < 1:
            raise ValueError("instances >= 1, size >= 8 and supersample >= 1 are needed")
        low, high = self.strokes
        if not 1 <= low <= high:
            raise ValueError(f"strokes must be (fewest, most) with 1 <= fewest <= most, got {self.strokes}")
        if not 0 < self.width[0] <= self.width[1]:
            raise ValueError(f"width must be (low, high) with 0 < low <= high, got {self.width}")
        for name in ("point_jitter", "rotation", "scale", "shear", "shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")

    def split_classes(self, split: str) -> range:
        """Global class numbers of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown glyph split {split!r}; choose from {', '.join(SPLITS)}")
        index = SPLITS.index(split)
        start = sum(self.classes[:index])
        return range(start, start + self.classes[index])

    def signature(self) -> str:
        """What the cache compares: every setting (a different config draws different glyphs)."""
        return repr(sorted(asdict(self).items()))


Stroke = np.ndarray
"""Control points of one stroke, (4, 2) for a cubic Bezier (a line: 4 collinear points)."""

_T = np.linspace(0.0, 1.0, 16)
_BERNSTEIN = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T**2, _T**3], axis=1)  # (16, 4)


def _class_strokes(rng: np.random.Generator, config: GlyphConfig) -> list[Stroke]:
    """One character: its strokes' control points in canvas units (0..1)."""
    low, high = config.strokes
    strokes: list[Stroke] = []
    for _ in range(int(rng.integers(low, high + 1))):
        start = strokes[int(rng.integers(len(strokes)))][-1] if strokes and rng.random() < 0.5 else None
        points = rng.uniform(0.2, 0.8, size=(4, 2))
        if start is not None:
            points[0] = start
        if rng.random() < 0.25:  # a straight line: control points on the chord
            points[1] = points[0] + (points[3] - points[0]) / 3
            points[2] = points[0] + 2 * (points[3] - points[0]) / 3
        strokes.append(points)
    return strokes


def _affines(rng: np.random.Generator, config: GlyphConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random small affine maps about the canvas centre: matrices (n, 2, 2) and shifts (n, 2)."""
    angle = np.deg2rad(rng.normal(0.0, config.rotation, size=n))
    scale = np.exp(rng.normal(0.0, config.scale, size=(n, 2)))
    shear = rng.normal(0.0, config.shear, size=n)
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shearing = np.zeros((n, 2, 2))
    shearing[:, 0, 0] = shearing[:, 1, 1] = 1.0
    shearing[:, 0, 1] = shear
    matrices = rotate @ shearing * scale[:, None, :]  # rotate . shear . diag(scale)
    return matrices, rng.normal(0.0, config.shift, size=(n, 2))


def _draw(curves: np.ndarray, width: float, config: GlyphConfig) -> np.ndarray:
    """Render sampled strokes (strokes, points, 2) in canvas pixels of the supersampled canvas to a uint8
    (size, size) image, anti-aliased by box-filter reduction."""
    big = config.size * config.supersample
    canvas = Image.new("L", (big, big), 0)
    pen = ImageDraw.Draw(canvas)
    radius = width * big / 2
    for curve in curves:
        pen.line(curve.ravel().tolist(), fill=255, width=max(1, round(2 * radius)))
        for x, y in (curve[0], curve[-1]):  # round caps
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return np.asarray(canvas.resize((config.size, config.size), Image.Resampling.BOX))


def glyph_class(number: int, config: GlyphConfig) -> np.ndarray:
    """All `config.instances` drawings of global class `number`: uint8 (instances, size, size)."""
    rng = np.random.default_rng([config.seed, number])
    strokes = np.stack(_class_strokes(rng, config))  # (S, 4, 2)
    n = config.instances
    matrices, shifts = _affines(rng, config, n)
    points = strokes + rng.normal(0.0, config.point_jitter, size=(n, *strokes.shape))  # (n, S, 4, 2)
    points = np.einsum("nspc,ndc->nspd", points - 0.5, matrices) + 0.5 + shifts[:, None, None, :]
    curves = np.einsum("tp,nspc->nstc", _BERNSTEIN, points) * (config.size * config.supersample)
    widths = rng.uniform(*config.width, size=n)
    return np.stack([_draw(curves[i], widths[i], config) for i in range(n)])


def generate_split(split: str, config: GlyphConfig) -> np.ndarray:
    """Every item of one split, class by class: uint8 (classes * instances, 1, size, size)."""
    return np.stack([glyph_class(n, config) for n in config.split_classes(split)]).reshape(
        -1, 1, config.size, config.size
    )


def load_glyphs(
    split: str, config: GlyphConfig | None = None, cache: CacheOption = True, rotations: int = 1
) -> ClassDataset:
    """One split of the glyphs as a `ClassDataset` (`glyphs/<split>`), generated on first use and cached
    (`cache=True`: the user cache folder, `$METALEARN_CACHE/fewshot`; a folder; or `False`: in RAM)."""
    config = config or GlyphConfig()
    numbers = config.split_classes(split)

    def build() -> Decoded:
        sizes = [config.instances] * len(numbers)
        return Decoded(generate_split(split, config), sizes, [f"glyph{n:05d}" for n in numbers])

    signature = [config.signature(), PIL.__version__, np.__version__]
    key = f"glyphs-{split}-{config.size}"
    return load_cached(cache_folder(cache, None), key, signature, build, f"glyphs/{split}", rotations)
