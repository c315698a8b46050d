"""Checkpoints, configs and models get ordinary file permissions (umask respected), not a temp file's 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from metalearn.checkpoint import save_json, save_state
from tests.core.test_runs import trainer


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    save_state({"x": torch.zeros(2)}, tmp_path / "state.pt")
    save_json({"a": 1}, tmp_path / "config.json")
    trainer().fit(1, checkpoint_dir=tmp_path / "run")
    written = [tmp_path / "state.pt", tmp_path / "config.json", *(tmp_path / "run").glob("*.pt")]
    assert len(written) == 4
    for path in written:
        assert mode(path) == expected, (path, oct(mode(path)))
