"""Run folders through the CLI: no run lost or mixed, resume checked, OS problems as one-line errors up front."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import Result

from metalearn.runs import lock_run_dir
from tests.iqa.test_cli import SCRATCH, SMALL_FAST, TRAIN_FAST, assert_one_line_error, run


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written to the home folder or the working directory."""
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def train(root: Path, *extra: str, fast: list[str] = SMALL_FAST) -> Result:
    return run("iqa", "train", "--dataset", "kadid10k", "--root", str(root), *fast, "--out", "run", *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def logged(folder: Path) -> list[int]:
    with (folder / "checkpoint" / "metrics.csv").open(newline="") as fh:
        return [int(r["iteration"]) for r in csv.DictReader(fh)]


# ------------------------------------------------------------------------------------- previous runs


def test_train_into_a_previous_run_is_refused_until_overwrite(kadid_root: Path, tmp_path: Path) -> None:
    assert train(kadid_root, "--iterations", "2").exit_code == 0
    before = snapshot(tmp_path / "run")
    assert_one_line_error(train(kadid_root, "--iterations", "1"), "run", "--resume", "--overwrite")
    assert snapshot(tmp_path / "run") == before  # metrics, checkpoint and prior untouched

    result = train(kadid_root, "--iterations", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert logged(tmp_path / "run") == [1]
    assert json.loads((tmp_path / "run" / "prior.json").read_text())["iterations"] == 1
    state = torch.load(tmp_path / "run" / "checkpoint" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 1


def test_resume_and_overwrite_together(kadid_root: Path) -> None:
    assert_one_line_error(train(kadid_root, "--resume", "--overwrite"), "--resume", "--overwrite")


def test_a_second_run_on_a_folder_in_use_fails(kadid_root: Path, tmp_path: Path) -> None:
    with lock_run_dir(tmp_path / "run"):
        result = train(kadid_root, "--iterations", "1")
    assert_one_line_error(result, "run", "another run is using this folder")
    assert not (tmp_path / "run" / "prior.pt").exists()


# ------------------------------------------------------------------------------------- resume checks


def test_resume_with_another_head_names_it(kadid_root: Path) -> None:
    assert train(kadid_root, *SCRATCH, fast=TRAIN_FAST).exit_code == 0
    result = train(kadid_root, *SCRATCH, "--resume", "--head", "authors", fast=TRAIN_FAST)
    assert_one_line_error(result, "run", "model.head: 'paper' -> 'authors'")


def test_resume_with_another_algorithm_and_crop_lists_both(kadid_root: Path) -> None:
    assert train(kadid_root, "--iterations", "1").exit_code == 0
    result = train(kadid_root, "--iterations", "2", "--resume", "--algorithm", "maml", "--train-crop", "48")
    assert_one_line_error(result, "algorithm: 'metaiqa' -> 'maml'", "task.crop: 32 -> 48")


def test_resume_with_fewer_iterations_is_refused_more_continue(kadid_root: Path, tmp_path: Path) -> None:
    assert train(kadid_root, "--iterations", "3").exit_code == 0
    assert_one_line_error(train(kadid_root, "--iterations", "2", "--resume"), "3 iterations", "at least 3")
    assert json.loads((tmp_path / "run" / "prior.json").read_text())["iterations"] == 3
    result = train(kadid_root, "--iterations", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert logged(tmp_path / "run") == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run" / "prior.json").read_text())["iterations"] == 4


# ------------------------------------------------------------------------------ devices and output paths


def test_unknown_device(tmp_path: Path) -> None:
    # a missing --root too: the device is checked before any data is read
    result = train(tmp_path / "missing", "--device", "gpu0")
    assert_one_line_error(result, "--device", "'gpu0'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(tmp_path: Path) -> None:
    result = train(tmp_path / "missing", "--device", "cuda")
    assert_one_line_error(result, "--device", "'cuda'", "no CUDA GPU")


def test_out_under_a_file(kadid_root: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST, "--out", "a-file/run"
    )  # fmt: skip
    assert_one_line_error(result, "--out", "a-file/run", "a file is in the way")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(kadid_root: Path, tmp_path: Path) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(
            "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
            "--out", str(locked / "run"),
        )  # fmt: skip
        assert_one_line_error(result, "--out", "read-only")
    finally:
        locked.chmod(0o700)


def test_file_outputs_where_a_file_is(kadid_root: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    result = run("iqa", "data", "--dataset", "kadid10k", "--root", str(kadid_root), "--out", "a-file/t.csv")
    assert_one_line_error(result, "--out", "a-file/t.csv")
    result = run(
        "iqa", "finetune", "--checkpoint", "none.pt", "--dataset", "kadid10k", "--root", str(kadid_root),
        "--out", "a-file/ft.pt",
    )  # fmt: skip
    assert_one_line_error(result, "--out", "a-file/ft.pt")
    result = run("iqa", "predict", str(tmp_path), "--checkpoint", "none.pt", "--csv", "a-file/s.csv")
    assert_one_line_error(result, "--csv", "a-file/s.csv")


def test_demo_refuses_a_previous_run_and_a_bad_out(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    assert_one_line_error(run("iqa", "demo", "--out", "a-file/demo"), "--out", "a-file/demo")
    assert_one_line_error(run("iqa", "demo", "--resume", "--overwrite"), "--resume", "--overwrite")


def test_csv_and_json_outputs_create_their_folders(
    kadid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from metalearn_iqa.evaluation import predict as predict_module
    from metalearn_iqa.model.network import ModelConfig
    from metalearn_iqa.model.weights import build_model, save_model

    config = ModelConfig(backbone="small", width=4, pretrained="none")
    save_model(build_model(config), config, tmp_path / "m.pt")
    result = run(
        "iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root), "--checkpoint", "m.pt",
        "--json", "new/deeper/m.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "new" / "deeper" / "m.json").read_text())["n"] > 0

    predict = predict_module.predict_records

    def predict_then_lose_the_folder(*args: Any, **kwargs: Any) -> Any:
        scores = predict(*args, **kwargs)
        shutil.rmtree(tmp_path / "gone")  # the checked folder vanishes while the work runs
        return scores

    monkeypatch.setattr(predict_module, "predict_records", predict_then_lose_the_folder)
    images = str(kadid_root / "images")
    result = run("iqa", "predict", images, "--checkpoint", "m.pt", "--csv", "gone/x/s.csv")
    assert result.exit_code == 0, result.output
    with (tmp_path / "gone" / "x" / "s.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) > 0


def test_json_where_a_file_is_fails_before_the_work(kadid_root: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    result = run(
        "iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root), "--checkpoint", "none.pt",
        "--json", "a-file/m.json",
    )  # fmt: skip
    assert_one_line_error(result, "--json", "a-file/m.json")
