"""SIGINT/SIGTERM stop training with a checkpoint (between iterations, or mid-step when the step can be
replayed); resuming it is exact; a second signal stops at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from metalearn import Interrupted, MetaAlgorithm, MetaIQA, MetaTrainer, TrainerConfig, mse_loss
from metalearn.checkpoint import load_state
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.trainer.signals import ForcedStop
from tests.helpers import tiny_mlp, tiny_trainer


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


class SignalAtCall:
    """A loss that sends this process `signum` at its `at`-th evaluations (a stop arriving mid-step)."""

    def __init__(self, signum: int, *at: int) -> None:
        self.signum, self.at, self.calls = signum, set(at), 0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls in self.at:
            os.kill(os.getpid(), self.signum)
        return mse_loss(pred, target)


def _trainer(algorithm: MetaAlgorithm, loss_fn=mse_loss) -> MetaTrainer:
    config = TrainerConfig(tasks_per_batch=4, outer_lr=0.01, seed=1, progress=False, checkpoint_every=1)
    return MetaTrainer(
        tiny_mlp(),
        algorithm,
        SinusoidSampler(shots=4, query_shots=4),
        loss_fn=loss_fn,
        device="cpu",
        config=config,
    )


# MetaIQA with inner_steps=1 evaluates the loss twice per task: 4 tasks x 2 = 8 calls per iteration.
CALLS_PER_ITERATION = 8


def test_a_stop_mid_step_abandons_it_and_the_resume_replays_it_exactly(tmp_path: Path) -> None:
    """A stop during task 2 of iteration 3 does not wait for tasks 3 and 4: the step is abandoned, the
    checkpoint holds iteration 2, and resuming ends with the uninterrupted run's weights."""
    loss = SignalAtCall(signal.SIGINT, 2 * CALLS_PER_ITERATION + 3)
    interrupted = _trainer(MetaIQA(inner_lr=0.01, inner_steps=1), loss)
    with pytest.raises(Interrupted) as info:
        interrupted.fit(5, checkpoint_dir=tmp_path / "a")
    assert info.value.iteration == 2 and load_state(tmp_path / "a" / "checkpoint.pt")["iteration"] == 2
    assert loss.calls == 2 * CALLS_PER_ITERATION + 4  # task 2 finished; tasks 3 and 4 never ran
    resumed = _trainer(MetaIQA(inner_lr=0.01, inner_steps=1))
    resumed.fit(5, checkpoint_dir=tmp_path / "a", resume=True)
    straight = _trainer(MetaIQA(inner_lr=0.01, inner_steps=1))
    straight.fit(5)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_an_algorithm_carrying_state_between_tasks_finishes_its_step(tmp_path: Path) -> None:
    """MetaIQA's kept inner Adam cannot be put back: the stop waits for the end of the iteration."""
    loss = SignalAtCall(signal.SIGINT, 2 * CALLS_PER_ITERATION + 3)
    algorithm = MetaIQA(inner_lr=0.01, inner_steps=1, reset_inner_state=False)
    assert algorithm.carries_state_between_tasks
    with pytest.raises(Interrupted) as info:
        _trainer(algorithm, loss).fit(5, checkpoint_dir=tmp_path)
    assert info.value.iteration == 3 and loss.calls == 3 * CALLS_PER_ITERATION


def test_a_second_signal_stops_at_once_and_leaves_the_last_checkpoint_whole(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    loss = SignalAtCall(signal.SIGINT, 2 * CALLS_PER_ITERATION + 3, 2 * CALLS_PER_ITERATION + 4)
    with pytest.raises(ForcedStop, match="second SIGINT"):
        _trainer(MetaIQA(inner_lr=0.01, inner_steps=1), loss).fit(5, checkpoint_dir=tmp_path)
    assert loss.calls == 2 * CALLS_PER_ITERATION + 4  # it stopped inside the call that got the signal
    assert load_state(tmp_path / "checkpoint.pt")["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is before
