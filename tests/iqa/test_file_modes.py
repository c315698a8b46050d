"""A prior file gets ordinary permissions (umask respected), not a temp file's 0600."""

from __future__ import annotations

from pathlib import Path

from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, save_model
from tests.helpers import file_mode


def test_a_prior_file_follows_the_umask(tmp_path: Path, umask: int) -> None:
    config = ModelConfig(backbone="small", width=4, pretrained="none")
    save_model(build_model(config), config, tmp_path / "prior.pt")
    assert file_mode(tmp_path / "prior.pt") == 0o666 & ~umask
