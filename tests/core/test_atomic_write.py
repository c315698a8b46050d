"""A failed checkpoint write (a full disk, a folder gone read-only) is an `OSError` naming the file, leaves
the old file as it was and no temporary file, whatever the writer (torch.save's zip writer) made of it."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest
import torch

from metalearn.checkpoint import _Writer, atomic_write_bytes
from tests.helpers import full_disk_after


def test_torch_save_on_a_full_disk_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"the previous checkpoint")
    with full_disk_after(4096), pytest.raises(OSError) as caught:
        atomic_write_bytes(target, lambda fh: torch.save({"w": torch.zeros(100_000)}, fh))
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(target)
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_an_unwritable_folder_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(blocker / "last.pt", lambda fh: fh.write(b"x"))
    assert "not_a_folder" in str(caught.value)


def test_a_writer_bug_that_is_not_io_propagates_unchanged(tmp_path: Path) -> None:
    def broken(fh: _Writer) -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        atomic_write_bytes(tmp_path / "x.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_met_inside_torch_save_is_raised_as_itself(tmp_path: Path) -> None:
    """A second Ctrl-C lands in a write of `torch.save`: its zip writer then fails with its own error;
    what must reach the CLI is the stop (exit 130), with the previous checkpoint whole and no temp file."""
    from metalearn.trainer.signals import ForcedStop

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the previous checkpoint")
    calls = {"n": 0}

    def save(fh: _Writer) -> None:
        real = fh.write

        def write(data: object) -> int:
            calls["n"] += 1
            if calls["n"] == 3:
                raise ForcedStop(signal.SIGINT)
            return real(data)

        fh.write = write  # type: ignore[method-assign]
        torch.save({"w": torch.zeros(1000), "b": torch.ones(1000)}, fh)

    with pytest.raises(ForcedStop):
        atomic_write_bytes(target, save)
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
