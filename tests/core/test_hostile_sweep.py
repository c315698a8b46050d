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


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["iqa", "train", "--dataset", "kadid10k", "--epochs", "inf"],
            "'--epochs': 'inf' is not a finite number",
        ),
        (
            ["iqa", "train", "--dataset", "kadid10k", "--epochs", "nan"],
            "'--epochs': 'nan' is not a finite number",
        ),
        (
            ["iqa", "train", "--dataset", "kadid10k", "--outer-lr", "0"],
            "'--outer-lr': 0.0 is not in the range x>0",
        ),
        (["iqa", "pretrain", "--temperature", "inf"], "'--temperature': 'inf' is not a finite number"),
        (["iqa", "lodo", "--dataset", "kadid10k", "--types", "1,1"], "'--types': 1 is given twice in '1,1'"),
        (["iqa", "demo", "--seeds", "0,2,0"], "'--seeds': 0 is given twice"),
        (["iqa", "train", "--dataset", "kadid10k", "--batch-size", "1000000000"], "'--batch-size'"),
        (
            [
                "fewshot",
                "train",
                "--dataset",
                "glyphs",
                "--algorithm",
                "maml",
                "--iterations",
                "1",
                "--inner-lr",
                "-1",
                "--out",
                "run",
            ],
            "'--inner-lr': -1.0 is not in the range x>0",
        ),  # fmt: skip
    ],
)
def test_the_issues_cases_are_refused_when_parsed(args: list[str], words: str, tmp_path: Path) -> None:
    """Issue 20's own command lines: refused before any data is read or folder made, in one line."""
    from tests.sweep.hostile_cli import invoke

    result = invoke([*args, "--out", str(tmp_path / "out")] if "--out" not in args else args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert words in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
