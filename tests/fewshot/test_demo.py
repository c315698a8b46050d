"""The few-shot demo's report: every method scored on the same episodes, paired differences that are the
mean of per-episode differences, verdicts that follow their intervals, and the same numbers whether the
methods ran in worker processes or in this one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from metalearn_fewshot.demo import METHODS, DemoConfig, _report, format_report, run_demo, run_method

TINY = DemoConfig(
    iterations=2, tasks_per_batch=1, query=3, batch_classes=4, episodes=5, hidden=4, finetune_steps=3
)


@pytest.fixture(scope="module", autouse=True)
def glyph_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The glyphs are generated into a cache of this module's own (inherited by spawned workers)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METALEARN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def serial() -> dict:
    return run_demo(TINY, log=lambda line: None, workers=1)


def test_report_holds_every_method_with_its_interval(serial: dict) -> None:
    assert list(serial["methods"]) == list(METHODS)
    for row in serial["methods"].values():
        assert 0 <= row["accuracy"] <= 1 and row["ci95"] >= 0
        assert row["image_passes"] == 2 * 20  # 2 iterations of 1 episode x 5 ways x (1 + 3) images
    assert serial["episodes"] == 5 and set(serial["paired_vs_baseline"]) == {"protonet", "maml"}


def test_paired_differences_are_per_episode_and_the_verdict_follows_the_interval() -> None:
    results = {name: run_method(name, TINY) for name in METHODS}
    baseline = torch.tensor(results["baseline"].result.accuracies, dtype=torch.float64)
    report = _report(TINY, [results[name] for name in METHODS])
    for name in ("protonet", "maml"):
        difference = torch.tensor(results[name].result.accuracies, dtype=torch.float64) - baseline
        row = report["paired_vs_baseline"][name]
        assert row["mean"] == pytest.approx(float(difference.mean()))
        assert row["ci95"] == pytest.approx(1.96 * float(difference.std()) / 5**0.5)
        low, high = row["mean"] - row["ci95"], row["mean"] + row["ci95"]
        expected = f"{name} better" if low > 0 else "baseline better" if high < 0 else "not distinguishable"
        assert row["verdict"] == expected
    assert "paired over the same episodes" in format_report(report)


def test_worker_processes_give_the_serial_numbers(serial: dict) -> None:
    parallel = run_demo(TINY, log=lambda line: None, workers=3)
    for name in METHODS:
        for key in ("accuracy", "ci95", "image_passes"):
            assert parallel["methods"][name][key] == serial["methods"][name][key], (name, key)


def test_the_config_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="finetune_lr must be positive"):
        DemoConfig(finetune_lr=0.0)
    with pytest.raises(ValueError, match="split evenly"):
        DemoConfig(batch_classes=7)
    with pytest.raises(ValueError, match="iterations must be a whole number"):
        DemoConfig(iterations=2.5)  # type: ignore[arg-type]
