"""Checkpoints, configs and models get ordinary file permissions (umask respected), not a temp file's 0600."""

from __future__ import annotations

from pathlib import Path

import torch

from metalearn.checkpoint import save_json, save_state
from tests.helpers import file_mode, tiny_trainer


def test_saved_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    save_state({"x": torch.zeros(2)}, tmp_path / "state.pt")
    save_json({"a": 1}, tmp_path / "config.json")
    tiny_trainer().fit(1, checkpoint_dir=tmp_path / "run")
    written = [tmp_path / "state.pt", tmp_path / "config.json", *(tmp_path / "run").glob("*.pt")]
    assert len(written) == 4
    for path in written:
        assert file_mode(path) == expected, (path, oct(file_mode(path)))
