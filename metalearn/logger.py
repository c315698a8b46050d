"""Training logs: one CSV row per logged iteration, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from metalearn.checkpoint import atomic_write_text

METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    """Appends metric rows to `<log_dir>/metrics.csv` (resumable) and, optionally, TensorBoard scalars."""

    def __init__(self, log_dir: str | Path, tensorboard: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.log_dir / METRICS_FILE
        self._fields: list[str] | None = None
        if self.csv_path.is_file():
            with self.csv_path.open(newline="") as fh:
                self._fields = next(csv.reader(fh), None)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.log_dir / TENSORBOARD_DIR))
            except ImportError:  # TensorBoard is optional
                self._writer = None

    def truncate_after(self, iteration: int) -> None:
        """Drop rows logged after `iteration` (a resumed run re-logs them), and a torn last row.

        A run killed while appending leaves a partial row: a row missing fields, or whose iteration does
        not follow the one before (a cut-off number), ends what is kept. Rewritten atomically.
        """
        if not self.csv_path.is_file():
            return
        with self.csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames
        kept: list[dict[str, str]] = []
        for row in rows:
            number = _iteration(row, fields)
            if number is None or number > iteration or (kept and number <= int(kept[-1]["iteration"])):
                break
            kept.append(row)
        if not kept:
            self.csv_path.unlink()
            self._fields = None
            return
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.csv_path, table.getvalue())

    def log(self, row: dict[str, Any]) -> None:
        if self._fields is None:
            self._fields = list(row)
            with self.csv_path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self._fields)
        with self.csv_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore").writerow(row)
        if self._writer is not None:
            step = int(row["iteration"])
            for key, value in row.items():
                if key != "iteration" and isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _iteration(row: dict[str | None, Any], fields: Any) -> int | None:
    """A row's iteration, or None for a torn row (missing or extra fields, or no integer iteration)."""
    if None in row or any(row.get(name) is None for name in fields or ()):
        return None
    try:
        return int(row["iteration"])
    except (KeyError, TypeError, ValueError):
        return None


def read_metrics(log_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a `metrics.csv` as floats (for plots and reports)."""
    path = Path(log_dir) / METRICS_FILE
    with path.open(newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]
