"""QPT's degradation process over our 25 distortion types: 1 to 3 types in a random order, each at a
continuous random strength.

A strength is a *level* in [1, 5] (1 = KADID-10K's mildest level, 5 its strongest); the type's parameter
is interpolated linearly between the two fixed levels around it (`parameter_at`), so a level of 2.5 sits
half-way between levels 2 and 3. Types whose parameter is a count (number of colours, JPEG quality, patch
and block counts, quantisation levels: `INTEGER_TYPES`) take its integer part, as `distortions` does.

Everything random (which types, their order, their strengths, and each distortion's own noise) is drawn
from the `numpy.random.Generator` passed in, so one seed gives one chain and one image.

The size of the space (`space_size`): with strengths quantised to `steps` evenly spaced levels over
[1, 5] (41 steps = a tenth of a level), type t has n_t distinct parameter values (fewer than `steps` for
the integer types), and the ordered chains of k distinct types number k! * e_k(n_1, ..., n_T) (e_k the
k-th elementary symmetric polynomial): every order of every choice of k types, times their strengths.
The random draws inside a distortion (noise fields, blur angles) are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metalearn_iqa.data.distortions import DISTORTIONS, DistortionType, distortion

Degradation = tuple[int, float]
"""(KADID-10K type index 1..25, level in [1, 5])."""

MIN_LEVEL, MAX_LEVEL = 1.0, 5.0
INTEGER_TYPES = frozenset({6, 10, 20, 22, 23})
"""Types whose parameter the distortion truncates to an integer (colours, quality, counts, levels)."""
ALL_TYPES: tuple[int, ...] = tuple(d.index for d in DISTORTIONS)


@dataclass(frozen=True)
class DegradationConfig:
    """Which types a chain draws from, how many it applies (`min_count`..`max_count`, distinct types),
    and the granularity at which `space_size` counts strengths (`steps` levels over [1, 5])."""

    types: tuple[int, ...] = ALL_TYPES
    min_count: int = 1
    max_count: int = 3
    steps: int = 41

    def __post_init__(self) -> None:
        for t in self.types:
            distortion(t)  # raises on an unknown type
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"types must be distinct, got {self.types}")
        if not 1 <= self.min_count <= self.max_count:
            raise ValueError(f"need 1 <= min_count <= max_count, got {self.min_count}, {self.max_count}")
        if self.max_count > len(self.types):
            raise ValueError(f"max_count {self.max_count} exceeds the {len(self.types)} types to draw from")
        if self.steps < 2:
            raise ValueError(f"steps must be at least 2, got {self.steps}")


def parameter_at(kind: DistortionType, level: float) -> float:
    """The type's parameter at a continuous `level` in [1, 5], linear between the fixed levels around it."""
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in [{MIN_LEVEL:g}, {MAX_LEVEL:g}], got {level!r}")
    value = float(np.interp(level, np.arange(1, len(kind.levels) + 1), kind.levels))
    return float(int(value)) if kind.index in INTEGER_TYPES else value


def sample_chain(rng: np.random.Generator, config: DegradationConfig) -> list[Degradation]:
    """A random chain: `min_count`..`max_count` distinct types in a random order, each at a uniform level."""
    count = int(rng.integers(config.min_count, config.max_count + 1))
    kinds = rng.choice(np.asarray(config.types), size=count, replace=False)
    levels = rng.uniform(MIN_LEVEL, MAX_LEVEL, size=count)
    return [(int(k), float(v)) for k, v in zip(kinds, levels)]


def apply_chain(image: np.ndarray, chain: Sequence[Degradation], rng: np.random.Generator) -> np.ndarray:
    """Apply the chain's degradations in order to a float32 H x W x 3 image in [0, 1]; clipped after each."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {x.shape}")
    for index, level in chain:
        kind = distortion(index)
        x = np.clip(np.asarray(kind.fn(x, parameter_at(kind, level), rng), dtype=np.float32), 0.0, 1.0)
    return x


def degrade(
    image: np.ndarray, rng: np.random.Generator, config: DegradationConfig
) -> tuple[np.ndarray, list[Degradation]]:
    """Draw a chain and apply it: the degraded image and the chain."""
    chain = sample_chain(rng, config)
    return apply_chain(image, chain, rng), chain


def distinct_strengths(index: int, steps: int) -> int:
    """How many distinct parameter values type `index` takes on `steps` evenly spaced levels over [1, 5]."""
    kind = distortion(index)
    return len({parameter_at(kind, float(v)) for v in np.linspace(MIN_LEVEL, MAX_LEVEL, steps)})


def space_size(config: DegradationConfig) -> int:
    """Ordered chains of `min_count`..`max_count` distinct types x their quantised strengths (exact)."""
    counts = [distinct_strengths(t, config.steps) for t in config.types]
    elementary = [1] + [0] * config.max_count  # e_k of the counts seen so far, k = 0..max_count
    for n in counts:
        for k in range(config.max_count, 0, -1):
            elementary[k] += elementary[k - 1] * n
    return sum(math.factorial(k) * elementary[k] for k in range(config.min_count, config.max_count + 1))
