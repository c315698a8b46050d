"""Protocol results as JSON plus a readable markdown table."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metalearn.checkpoint import atomic_write_text
from metalearn.distributed import on_main


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN when a value is undefined (None/NaN)."""
    floats = [math.nan if v is None else v for v in values]
    if any(math.isnan(v) for v in floats):  # statistics.stdev fails on NaN
        return math.nan, math.nan
    return statistics.fmean(floats), (statistics.stdev(floats) if len(floats) > 1 else 0.0)


def mean_std_if_all(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """`mean_std`, or (None, None) when some value is missing (a metric skipped for some split)."""
    present = [v for v in values if v is not None]
    return mean_std(present) if present and len(present) == len(values) else (None, None)


def cell(value: Any) -> str:
    """A table cell: floats to 4 decimals, None (a skipped metric) as n/a, NaN (undefined) as undefined."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "undefined"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(result: dict[str, Any], table: str, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md` into `out_dir`; an undefined (NaN) number is JSON `null`.

    Under `torchrun` every rank calls it and rank 0 writes.
    """
    return on_main(_write_report, result, table, Path(out_dir), stem)


def _write_report(result: dict[str, Any], table: str, out: Path, stem: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    text = json.dumps(_json_safe(result), indent=2, default=str) + "\n"
    atomic_write_text(json_path, text)  # a kill leaves the old file or the new one
    atomic_write_text(md_path, table + "\n")
    return json_path, md_path


def _json_safe(value: Any) -> Any:
    """`value` with every NaN float (an undefined correlation, or a mean over one) replaced by None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
