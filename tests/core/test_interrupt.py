"""SIGINT/SIGTERM stop training between iterations with a checkpoint; resuming it is exact."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from metalearn import Interrupted
from metalearn.checkpoint import load_state
from tests.helpers import tiny_trainer


def signal_at(iteration: int, signum: int):
    """A callback that sends this process `signum` once `iteration` is done."""

    def callback(row: dict[str, float]) -> None:
        if row["iteration"] == iteration:
            os.kill(os.getpid(), signum)

    return callback


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_raises(tmp_path: Path, signum: int) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted, match=signal.Signals(signum).name) as info:
        tiny_trainer().fit(50, checkpoint_dir=tmp_path, callback=signal_at(3, signum))
    assert info.value.signum == signum and info.value.iteration == 3
    assert info.value.checkpoint == tmp_path
    assert load_state(tmp_path / "checkpoint.pt")["iteration"] == 3
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored


def test_resuming_an_interrupted_run_is_exact(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        tiny_trainer().fit(6, checkpoint_dir=tmp_path / "a", callback=signal_at(2, signal.SIGTERM))
    resumed = tiny_trainer()
    resumed.fit(6, checkpoint_dir=tmp_path / "a", resume=True)
    straight = tiny_trainer()
    straight.fit(6, checkpoint_dir=tmp_path / "b")
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)


def test_without_a_checkpoint_folder_nothing_is_saved(tmp_path: Path) -> None:
    with pytest.raises(Interrupted, match="no checkpoint saved") as info:
        tiny_trainer().fit(50, callback=signal_at(1, signal.SIGINT))
    assert info.value.checkpoint is None


def test_handlers_are_restored_after_a_normal_fit(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    tiny_trainer().fit(2, checkpoint_dir=tmp_path)
    assert signal.getsignal(signal.SIGTERM) is before
