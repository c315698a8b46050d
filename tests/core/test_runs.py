"""Run folders: a previous run is never replaced unasked, two runs never share a folder, resume is checked and exact."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from metalearn import (
    MAML,
    MetaIQA,
    MetaTrainer,
    ResumeMismatchError,
    RunExistsError,
    RunLockedError,
)
from metalearn.examples.sinusoid import SinusoidSampler
from metalearn.logger import TENSORBOARD_DIR
from metalearn.runs import LOCK_FILE, RunFolderError, RunModeError, lock_run_dir, open_run
from metalearn.trainer import resolve_device
from tests.helpers import tiny_mlp, tiny_trainer


def logged(folder: Path) -> list[int]:
    with (folder / "metrics.csv").open(newline="") as fh:
        return [int(r["iteration"]) for r in csv.DictReader(fh)]


# ------------------------------------------------------------------------------------ existing runs


def test_fit_refuses_a_folder_holding_a_run(tmp_path: Path) -> None:
    tiny_trainer().fit(3, checkpoint_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != LOCK_FILE}
    with pytest.raises(RunExistsError, match="resume it or overwrite it") as info:
        tiny_trainer().fit(1, checkpoint_dir=tmp_path)
    assert info.value.path == tmp_path and "checkpoint.pt" in info.value.entries
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != LOCK_FILE}
    assert after == before  # nothing truncated or overwritten
    assert logged(tmp_path) == [1, 2, 3]


def test_overwrite_deletes_the_previous_run_first(tmp_path: Path) -> None:
    tiny_trainer().fit(3, checkpoint_dir=tmp_path)
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"half written")
    tiny_trainer().fit(1, checkpoint_dir=tmp_path, overwrite=True)
    assert logged(tmp_path) == [1]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 1
    assert not (tmp_path / ".checkpoint.pt.abc.tmp").exists()


def test_overwrite_never_deletes_files_no_run_wrote(tmp_path: Path) -> None:
    tiny_trainer().fit(1, checkpoint_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(RunExistsError, match="notes.txt") as info:
        tiny_trainer().fit(1, checkpoint_dir=tmp_path, overwrite=True)
    assert (
        info.value.foreign and (tmp_path / "notes.txt").is_file() and (tmp_path / "checkpoint.pt").is_file()
    )


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resume and overwrite"):
        tiny_trainer().fit(1, checkpoint_dir=tmp_path, resume=True, overwrite=True)


def test_a_separate_log_folder_is_protected_too(tmp_path: Path) -> None:
    tiny_trainer().fit(2, checkpoint_dir=tmp_path / "a", log_dir=tmp_path / "logs")
    with pytest.raises(RunExistsError, match="logs"):
        tiny_trainer().fit(2, checkpoint_dir=tmp_path / "b", log_dir=tmp_path / "logs")
    assert logged(tmp_path / "logs") == [1, 2]


def test_the_same_trainer_may_go_on_in_its_own_folder(tmp_path: Path) -> None:
    t = tiny_trainer()
    t.fit(2, checkpoint_dir=tmp_path)
    t.fit(4, checkpoint_dir=tmp_path)  # its own run: continuing, not replacing
    assert logged(tmp_path) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------- open_run


def test_open_run_creates_and_locks_the_folder_until_the_block_ends(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with open_run(folder, ("model.pt",)) as path:
        assert path == folder and folder.is_dir() and (folder / LOCK_FILE).is_file()
        with pytest.raises(RunLockedError, match="another run is using this folder"):
            with open_run(folder, ("model.pt",), resume=True):
                pass
        (folder / "model.pt").write_text("weights")
    with open_run(folder, ("model.pt",), resume=True):  # released, and the run continues
        assert (folder / "model.pt").read_text() == "weights"


def test_open_run_refuses_a_previous_run_and_overwrite_deletes_only_the_runs_files(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_text("old")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events").write_text("old")
    (tmp_path / ".model.pt.x1.tmp").write_text("half written")  # a killed write's leftover
    with pytest.raises(RunExistsError, match="resume it or overwrite it") as info:
        with open_run(tmp_path, ("model.pt",), ("logs",)):
            raise AssertionError("the block must not run")
    assert info.value.entries == ["logs", "model.pt"] and not info.value.foreign
    assert (tmp_path / "model.pt").read_text() == "old"
    with open_run(tmp_path, ("model.pt",), ("logs",), overwrite=True):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]
    (tmp_path / "model.pt").write_text("new")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError, match="notes.txt") as info:
        with open_run(tmp_path, ("model.pt",), ("logs",), overwrite=True):
            pass
    assert info.value.foreign and (tmp_path / "model.pt").read_text() == "new"


def test_open_run_refuses_resume_with_overwrite_before_touching_the_disk(tmp_path: Path) -> None:
    with pytest.raises(RunModeError, match="resume and overwrite exclude each other"):
        with open_run(tmp_path / "run", resume=True, overwrite=True):
            pass
    assert not (tmp_path / "run").exists()
    assert issubclass(RunModeError, ValueError)


def test_open_run_refuses_a_folder_where_the_run_writes_a_file(tmp_path: Path) -> None:
    (tmp_path / "model.pt").mkdir()
    with pytest.raises(RunFolderError, match="model.pt: is a folder"):
        with open_run(tmp_path, ("model.pt",), resume=True):
            pass


def test_open_run_with_the_trainers_files_sees_what_fit_wrote(tmp_path: Path) -> None:
    """The call `MetaTrainer.fit` makes for each of its folders: a finished run is refused, then replaced."""
    from metalearn.trainer import RUN_FILE_NAMES

    tiny_trainer().fit(2, checkpoint_dir=tmp_path)
    with pytest.raises(RunExistsError) as info:
        with open_run(tmp_path, RUN_FILE_NAMES, (TENSORBOARD_DIR,)):
            pass
    assert {"checkpoint.pt", "config.json", "metrics.csv", "model.pt"} <= set(info.value.entries)
    with open_run(tmp_path, RUN_FILE_NAMES, (TENSORBOARD_DIR,), overwrite=True):
        assert [p.name for p in tmp_path.iterdir()] == [LOCK_FILE]


# -------------------------------------------------------------------------------------------- locking


def test_a_second_run_on_a_locked_folder_fails(tmp_path: Path) -> None:
    with lock_run_dir(tmp_path):
        with pytest.raises(RunLockedError, match="another run is using this folder") as info:
            tiny_trainer().fit(1, checkpoint_dir=tmp_path)
        assert str(tmp_path) in str(info.value)
        assert not (tmp_path / "checkpoint.pt").exists()
    tiny_trainer().fit(1, checkpoint_dir=tmp_path)  # released: the folder is usable again


def test_a_lock_held_by_another_process_blocks_until_it_dies(tmp_path: Path) -> None:
    with subprocess.Popen(  # leaving the block closes its pipe and waits for it
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True)\n"
            "time.sleep(120)",
            str(tmp_path / LOCK_FILE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.raises(RunLockedError, match=str(tmp_path)):
                tiny_trainer().fit(1, checkpoint_dir=tmp_path)
        finally:
            holder.kill()
    # the killed holder's lock file stays behind, but its lock went with it
    assert (tmp_path / LOCK_FILE).is_file()
    tiny_trainer().fit(1, checkpoint_dir=tmp_path, resume=True)


# --------------------------------------------------------------------------------------- resume checks


def test_resume_refuses_other_settings_and_lists_them(tmp_path: Path) -> None:
    tiny_trainer().fit(2, checkpoint_dir=tmp_path)
    with pytest.raises(ResumeMismatchError, match=r"algorithm\.inner_lr: 0\.01 -> 0\.02") as info:
        tiny_trainer(MetaIQA(inner_lr=0.02, inner_steps=2), outer_lr=0.5).fit(
            3, checkpoint_dir=tmp_path, resume=True
        )
    assert "trainer.outer_lr: 0.01 -> 0.5" in str(info.value)
    with pytest.raises(ResumeMismatchError, match=r"algorithm\.name: 'metaiqa' -> 'maml'"):
        tiny_trainer(MAML(inner_lr=0.01)).fit(3, checkpoint_dir=tmp_path, resume=True)
    assert logged(tmp_path) == [1, 2]  # a refused resume leaves the run alone


def test_resume_refuses_a_smaller_budget(tmp_path: Path) -> None:
    tiny_trainer().fit(3, checkpoint_dir=tmp_path)
    with pytest.raises(ResumeMismatchError, match="done 3 iterations.*at least 3"):
        tiny_trainer().fit(2, checkpoint_dir=tmp_path, resume=True)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 3


def test_resume_allows_a_larger_budget_and_display_changes(tmp_path: Path) -> None:
    tiny_trainer(lr_decay=0.5, lr_decay_every=1, decay_inner_lr=True).fit(2, checkpoint_dir=tmp_path)
    resumed = tiny_trainer(lr_decay=0.5, lr_decay_every=1, decay_inner_lr=True, checkpoint_every=1)
    resumed.fit(4, checkpoint_dir=tmp_path, resume=True)  # the decayed inner rate is no difference
    assert logged(tmp_path) == [1, 2, 3, 4]


def test_resume_with_another_architecture_is_one_line(tmp_path: Path) -> None:
    tiny_trainer().fit(1, checkpoint_dir=tmp_path)
    with pytest.raises(ResumeMismatchError) as info:
        tiny_trainer(net=tiny_mlp(hidden=16)).fit(2, checkpoint_dir=tmp_path, resume=True)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "does not fit" in message


def test_resume_compares_the_run_config(tmp_path: Path) -> None:
    def with_run(crop: int) -> MetaTrainer:
        t = tiny_trainer()
        t.run_config = {"task": {"crop": crop}}
        return t

    with_run(32).fit(1, checkpoint_dir=tmp_path)
    with pytest.raises(ResumeMismatchError, match=r"task\.crop: 32 -> 48"):
        with_run(48).fit(2, checkpoint_dir=tmp_path, resume=True)


# ------------------------------------------------------------------------------------------ exactness


def test_resume_is_exact_with_dropout(tmp_path: Path) -> None:
    """Dropout draws from torch's global stream: the checkpoint carries it, so resumed == uninterrupted."""
    straight = tiny_trainer(net=tiny_mlp(dropout=True))
    straight.fit(4)
    tiny_trainer(net=tiny_mlp(dropout=True)).fit(2, checkpoint_dir=tmp_path)
    torch.manual_seed(123)  # whatever happened in between
    resumed = tiny_trainer(net=tiny_mlp(dropout=True))
    resumed.fit(4, checkpoint_dir=tmp_path, resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_holds_the_global_random_state(tmp_path: Path) -> None:
    tiny_trainer().fit(1, checkpoint_dir=tmp_path)
    expected = torch.get_rng_state()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(state["rng"]["torch"], expected)


# -------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", ""])
def test_unknown_device_is_a_value_error(device: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        MetaTrainer(tiny_mlp(), "maml", SinusoidSampler(), device="cuda:1")


# ------------------------------------------------------------------------------------ killed writes


def test_temp_files_of_killed_writes_are_deleted_by_the_next_run(tmp_path: Path) -> None:
    """A kill inside `atomic_write_bytes` leaves `.NAME.*.tmp`; whoever locks the folder next deletes it."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".checkpoint.pt.k2j4.tmp").write_bytes(b"half a checkpoint")
    tiny_trainer().fit(1, checkpoint_dir=folder)  # a new run: the torn file is not a previous run
    assert not (folder / ".checkpoint.pt.k2j4.tmp").exists()
    (folder / ".config.json.x1.tmp").write_text("{")
    (folder / "notes.tmp").write_text("not an atomic write's: no leading dot\n")
    tiny_trainer().fit(2, checkpoint_dir=folder, resume=True)
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == ["notes.tmp"]


def test_a_torn_metrics_row_is_dropped_on_resume(tmp_path: Path) -> None:
    first = tiny_trainer()
    first.fit(2, checkpoint_dir=tmp_path)
    with (tmp_path / "metrics.csv").open("a") as fh:
        fh.write("3,0.51")  # a kill in the middle of appending iteration 3's row
    tiny_trainer().fit(4, checkpoint_dir=tmp_path, resume=True)
    assert logged(tmp_path) == [1, 2, 3, 4]
    with (tmp_path / "metrics.csv").open("a") as fh:
        fh.write("1")  # a cut-off iteration number ("1" of "15") that looks like an old row
    tiny_trainer().fit(5, checkpoint_dir=tmp_path, resume=True)
    assert logged(tmp_path) == [1, 2, 3, 4, 5]


def test_config_is_written_before_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between two of a checkpoint's files must never leave a checkpoint.pt without its config."""
    import metalearn.trainer.checkpoints as trainer_module

    order: list[str] = []
    save_json, save_state = trainer_module.save_json, trainer_module.save_state

    def logged_json(data: dict[str, Any], path: Path) -> Path:
        order.append(Path(path).name)
        return save_json(data, path)

    def logged_state(state: dict[str, Any], path: Path) -> Path:
        order.append(Path(path).name)
        return save_state(state, path)

    monkeypatch.setattr(trainer_module, "save_json", logged_json)
    monkeypatch.setattr(trainer_module, "save_state", logged_state)
    tiny_trainer().fit(1, checkpoint_dir=tmp_path)
    assert order.index("config.json") < order.index("checkpoint.pt")
