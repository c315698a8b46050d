"""What `predict` and `cross --prior` need travels inside `prior.pt`; batch size 1 with BatchNorm is refused
before training."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import Result

from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, read_run_info, save_model
from metalearn_iqa.protocols.cross import prior_provenance
from tests.iqa.test_cli import SMALL_FAST, assert_one_line_error, run


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def train(root: Path, *extra: str) -> Result:
    return run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(root), *SMALL_FAST, "--out", "run", *extra
    )


def test_prior_carries_its_run_record_and_needs_no_prior_json(kadid_root: Path, tmp_path: Path) -> None:
    result = train(kadid_root, "--iterations", "1", "--algorithm", "reptile", "--seed", "3")
    assert result.exit_code == 0, result.output
    prior, side = tmp_path / "run" / "prior.pt", tmp_path / "run" / "prior.json"
    record = read_run_info(prior)
    assert record is not None and record == json.loads(
        side.read_text()
    )  # the same summary, in the prior itself
    assert record["config"]["algorithm"] == "reptile" and record["config"]["seed"] == 3
    assert record["config"]["task"]["crop"] == 32 and record["iterations"] == 1

    images = str(kadid_root / "images")
    before = run("iqa", "predict", images, "--checkpoint", str(prior))
    side.unlink()  # lost, or never copied along with the prior
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to fall back on, nothing to warn about
        after = run("iqa", "predict", images, "--checkpoint", str(prior))
        provenance = prior_provenance(prior)
    assert before.exit_code == after.exit_code == 0, after.output
    assert after.output == before.output  # same view, same scores, without prior.json
    assert provenance == {"prior": str(prior), "algorithm": "reptile", "init": "scratch"}


def test_an_older_prior_without_a_record_still_works_with_a_warning(kadid_root: Path, tmp_path: Path) -> None:
    config = ModelConfig(backbone="small", width=4)
    prior = save_model(build_model(config), config, tmp_path / "old" / "prior.pt")  # no run record
    assert "run" not in torch.load(prior, weights_only=True)
    (tmp_path / "old" / "prior.json").write_text(
        json.dumps({"config": {"algorithm": "maml", "model": {"pretrained": "none"}}})
    )
    with pytest.warns(UserWarning, match="older prior without its run record"):
        assert prior_provenance(prior)["algorithm"] == "maml"
    result = run("iqa", "predict", str(kadid_root / "images"), "--checkpoint", str(prior))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "model",
    [
        ["--no-pretrained"],
        ["--no-pretrained", "--head", "authors"],
        ["--backbone", "small", "--norm", "batch"],
    ],
)
def test_batch_size_1_with_batchnorm_is_refused_before_training(
    model: list[str], kadid_root: Path, tmp_path: Path
) -> None:
    args = ["--dataset", "kadid10k", "--root", str(kadid_root), "--train-crop", "32", "--device", "cpu"]
    result = run("iqa", "train", *args, *model, "--batch-size", "1", "--iterations", "1", "--out", "run")
    assert_one_line_error(result, "batch size 1", "BatchNorm", "--batch-size 2", "--freeze-batchnorm")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fix", [["--norm", "batch", "--freeze-batchnorm"], ["--norm", "none"]])
def test_batch_size_1_trains_without_batch_statistics(
    fix: list[str], kadid_root: Path, tmp_path: Path
) -> None:
    result = train(kadid_root, "--iterations", "1", "--batch-size", "1", *fix)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "prior.pt").is_file()
