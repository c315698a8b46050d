"""`metalearn iqa pretrain --method qpt` end to end on a tiny folder, its resume, and `--init` in train and
finetune (the backbone starts as the QPT file's; mismatches are one-line errors)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_iqa.model.network import IQANet
from metalearn_iqa.qpt.backbone import read_backbone
from metalearn_iqa.training.prior import PriorConfig, make_trainer
from metalearn_iqa.training.tasks import TaskConfig
from tests.iqa.test_cli import assert_one_line_error, run

TINY = ["--backbone", "small", "--width", "4"]
FAST = [*TINY, "--images-per-batch", "2", "--patch", "32", "--region", "36", "--device", "cpu"]
TRAIN = ["--iterations", "1", "--train-crop", "32", "--batch-size", "2", "--inner-steps", "1",
         "--tasks-per-batch", "1", "--device", "cpu"]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unlabelled")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def backbone(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qpt") / "run"
    result = run("iqa", "pretrain", "--images", str(photos), *FAST, "--iterations", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out / "backbone.pt"


def test_pretrain_prints_the_space_and_writes_a_backbone(backbone: Path) -> None:
    summary = json.loads((backbone.parent / "qpt.json").read_text())
    assert summary["iterations"] == 2 and summary["degradation_space"] >= 2 * 10**7
    state, config = read_backbone(backbone)
    assert config.backbone == "small" and config.width == 4
    assert not any(k.startswith("projection") for k in state)  # the head is dropped
    with (backbone.parent / "checkpoint" / "metrics.csv").open(newline="") as fh:
        assert [int(r["iteration"]) for r in csv.DictReader(fh)] == [1, 2]


def test_resume_ends_where_an_uninterrupted_run_ends(photos: Path, tmp_path: Path) -> None:
    args = ["iqa", "pretrain", "--images", str(photos), *FAST]
    first = run(*args, "--iterations", "2", "--out", "a")
    assert "degradation space: " in first.output and first.exit_code == 0
    assert_one_line_error(run(*args, "--iterations", "3", "--out", "a"), "--resume", "--overwrite")
    assert run(*args, "--iterations", "3", "--out", "a", "--resume").exit_code == 0
    assert run(*args, "--iterations", "3", "--out", "b").exit_code == 0
    resumed, straight = (
        read_backbone(tmp_path / "a" / "backbone.pt")[0],
        read_backbone(tmp_path / "b" / "backbone.pt")[0],
    )
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_the_prior_starts_from_the_qpt_backbone(backbone: Path, kadid_root: Path) -> None:
    from metalearn_iqa.data.kadid10k import load_kadid10k
    from metalearn_iqa.model.network import ModelConfig

    model = ModelConfig(backbone="small", width=4)
    config = PriorConfig(algorithm="baseline", iterations=1, device="cpu", model=model, init=str(backbone),
                         task=TaskConfig(crop=32, batch_size=2, batches=1))  # fmt: skip
    trainer = make_trainer(config, load_kadid10k(kadid_root))
    state = read_backbone(backbone)[0]
    assert trainer.iteration == 0
    assert isinstance(trainer.model, IQANet)
    assert all(torch.equal(v, state[k]) for k, v in trainer.model.backbone.state_dict().items())


def test_train_and_finetune_take_init(backbone: Path, kadid_root: Path, tmp_path: Path) -> None:
    data = ["--dataset", "kadid10k", "--root", str(kadid_root)]
    result = run("iqa", "train", *data, *TINY, *TRAIN, "--init", str(backbone), "--out", "prior")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "prior" / "prior.json").read_text())["init"] == str(backbone)
    result = run("iqa", "finetune", "--init", str(backbone), *data, "--epochs", "1", "--train-crop", "32",
                 "--batch-size", "2", "--out", "tuned.pt")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_one_line_error(
        run("iqa", "train", *data, *TRAIN, "--init", str(backbone), "--out", "r18"),
        str(backbone),
        "a QPT backbone for small",
        "network is resnet18",
    )
    assert_one_line_error(
        run("iqa", "train", *data, *TINY, *TRAIN, "--init", str(tmp_path / "prior" / "prior.pt")),
        "not a QPT backbone file",
    )
    assert_one_line_error(run("iqa", "finetune", *data, "--out", "x.pt"), "--checkpoint", "--init")


def test_lodo_and_cross_train_their_priors_from_init(
    backbone: Path, kadid_root: Path, tmp_path: Path
) -> None:
    data = ["--dataset", "kadid10k", "--root", str(kadid_root)]
    init = ["--init", str(backbone)]
    result = run(
        "iqa", "lodo", *data, *TINY, *TRAIN, *init, "--types", "9", "--finetune-epochs", "0", "--out", "lodo"
    )
    assert result.exit_code == 0, result.output
    cross = ["--prior-dataset", "kadid10k", "--prior-root", str(kadid_root), "--target", "kadid10k",
             "--target-root", str(kadid_root), "--repeats", "1", "--finetune-epochs", "0"]  # fmt: skip
    result = run("iqa", "cross", *cross, *TINY, *TRAIN, *init, "--out", "cross")
    assert result.exit_code == 0, result.output
    inits = [json.loads(p.read_text())["init"] for p in sorted(tmp_path.rglob("prior.json"))]
    assert inits == [str(backbone)] * 2  # one lodo fold, one cross prior
    given = tmp_path / "cross" / "prior" / "prior.pt"
    assert_one_line_error(
        run("iqa", "cross", *cross, *TINY, *TRAIN, *init, "--prior", str(given)), "--prior", "--init"
    )
