"""Training logs: one CSV row per logged iteration, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

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
        """Drop rows logged after `iteration` (a resumed run re-logs them)."""
        if not self.csv_path.is_file():
            return
        with self.csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        kept = [r for r in rows if int(r["iteration"]) <= iteration]
        if not kept:
            self.csv_path.unlink()
            self._fields = None
            return
        with self.csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(kept[0]))
            writer.writeheader()
            writer.writerows(kept)

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


def read_metrics(log_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a `metrics.csv` as floats (for plots and reports)."""
    path = Path(log_dir) / METRICS_FILE
    with path.open(newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]
