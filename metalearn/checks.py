"""Argument checks shared by configs, algorithms and commands: one rule and one wording per kind of value.

Each returns the value (as `float` / `int`) or raises `TypeError` for a value of the wrong kind (a string,
a bool, a tensor) and `ValueError` for one out of range (NaN, an infinity, a negative rate), naming it.
"""

from __future__ import annotations

import math
import numbers


def positive_finite(name: str, value: object) -> float:
    """A rate, a temperature, a budget: a real number, finite and above 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return number


def finite_at_least(name: str, value: object, minimum: float) -> float:
    """A real number, finite and at least `minimum` (a weight decay, a bound in bytes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number >= minimum):
        raise ValueError(f"{name} must be a finite number of at least {minimum:g}, got {value}")
    return number


def whole_number(name: str, value: object, minimum: int) -> int:
    """A count: an integer (not a bool, not 2.0) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
