"""The hostile CLI sweep (tests/sweep/hostile_cli.py) over every few-shot and IQA command: every case is
refused with exit 2 and one line naming the option or file, before any work, writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweep.hostile_cli import Fixture, cases, check


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))


def test_every_hostile_case_is_refused_in_one_line(tmp_path: Path) -> None:
    fx = Fixture(tmp_path)
    fx.train_fewshot_run()
    unhandled = []
    tried = 0
    for case in cases(fx):
        tried += 1
        outcome = check(case, fx)
        if not outcome.handled:
            unhandled.append(f"{case.name}: {outcome.why}")
    assert tried >= 590  # every option of every command is swept (a new option adds cases)
    assert not unhandled, "\n".join(unhandled)
