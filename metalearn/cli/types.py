"""Option types shared by every command, one rule and one wording per kind of value (no torch imported).

Click's own `FloatRange` lets `nan` and `inf` through (neither compares below a minimum), so every float
option of the CLI is a `FiniteFloat`; list options are `DistinctInts` (a value given twice is refused, not
silently used twice). The library's own checks (`metalearn.checks`) apply the same rules to the Python API.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: `nan`, `inf` and `-inf` are refused, naming the option."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


MAX_SIDE = 8192
"""The largest image side (crop, patch, resize) an option takes: one 8192 x 8192 RGB crop is 800 MB of
float32 before any network sees it; 10^9 would overflow torch's size arithmetic."""
MAX_FILTERS = 4096
"""The widest network an option builds (filters of a layer): a 3x3 convolution of 4096 to 4096 filters
is 600 MB of float32."""
MAX_BATCH = 65536
"""The most images (or crops) one batch takes; commands also refuse a batch larger than their data."""


def side(minimum: int) -> click.IntRange:
    """An image side in pixels: at least `minimum`, at most `MAX_SIDE`."""
    return click.IntRange(minimum, MAX_SIDE)


FILTERS = click.IntRange(1, MAX_FILTERS)
BATCH = click.IntRange(1, MAX_BATCH)
POSITIVE = FiniteFloat(0, min_open=True)
"""A learning rate, a temperature, a budget in epochs: finite and above 0."""
NON_NEGATIVE = FiniteFloat(0)
"""A bound, a weight: finite and at least 0."""
SEED = click.IntRange(0, 2**63 - 1)
"""A random seed: what `torch.Generator.manual_seed` takes, from 0."""


class DistinctInts(click.ParamType):
    """Comma-separated whole numbers (`1,4,9`), each at least `minimum`, none given twice."""

    name = "comma-separated integers"

    def __init__(self, minimum: int | None = None) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        items = [item.strip() for item in str(value).split(",")]
        if not any(items):
            return ()
        numbers: list[int] = []
        for item in items:
            try:
                number = int(item)
            except ValueError:
                self.fail(f"expects comma-separated integers, got {value!r}", param, ctx)
            if self.minimum is not None and number < self.minimum:
                self.fail(f"{number} is below {self.minimum}", param, ctx)
            if number in numbers:
                self.fail(f"{number} is given twice in {value!r}", param, ctx)
            numbers.append(number)
        return tuple(numbers)
