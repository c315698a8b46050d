"""One-line CLI errors: the core's (`metalearn.cli.errors`), plus the IQA application's input errors."""

from __future__ import annotations

from metalearn.cli.errors import (
    RUN_MODE_MESSAGE,
    SIGNAL_ERRORS,
    CLIError,
    InterruptedBySIGINT,
    InterruptedBySIGTERM,
    check_device,
    make_friendly_errors,
)
from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.model.weights import WeightsError

__all__ = [
    "RUN_MODE_MESSAGE",
    "SIGNAL_ERRORS",
    "CLIError",
    "InterruptedBySIGINT",
    "InterruptedBySIGTERM",
    "check_device",
    "friendly_errors",
]

friendly_errors = make_friendly_errors((DatasetError, WeightsError))
"""The core's one-line errors plus the IQA application's own (a bad database, a bad weights file)."""
