"""`metalearn fewshot ...`: counts on disk, a run trained, resumed exactly and evaluated, and every refusal in
one line with exit code 2 before any training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from metalearn.checkpoint import load_state
from metalearn.cli import main
from metalearn_fewshot.cli.options import DATASETS
from metalearn_fewshot.data.registry import DATASETS as REGISTERED
from metalearn_fewshot.training import RECORD_FILE, WEIGHTS_FILE, load_run
from tests.fewshot.fixtures import write_omniglot

ALPHABETS = {
    "images_background": {"Latin": 6, "Greek": 6, "Korean": 6},
    "images_evaluation": {"Atlantean": 6, "Mongolian": 6},
}
"""30 characters: the Vinyals-style split gives 19 training (76 with rotations), 3 validation, 8 test."""
TINY = [
    "--ways",
    "2",
    "--shots",
    "1",
    "--query",
    "2",
    "--hidden",
    "4",
    "--tasks-per-batch",
    "2",
    "--no-progress",
]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_omniglot(tmp_path_factory.mktemp("data") / "omniglot", ALPHABETS)


def train(omniglot: Path, out: Path, *extra: str, algorithm: str = "protonet") -> Result:
    return run(
        "fewshot", "train", "--dataset", "omniglot", "--root", str(omniglot), "--algorithm", algorithm,
        "--out", str(out), *TINY, *extra,
    )  # fmt: skip


def test_the_cli_offers_every_registered_dataset() -> None:
    assert set(DATASETS) == set(REGISTERED)


def test_data_counts_classes_before_rotation_and_images(omniglot: Path) -> None:
    result = run("fewshot", "data", "--dataset", "omniglot", "--root", str(omniglot))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "background: 18 classes, 72 images" in lines and "evaluation: 12 classes, 48 images" in lines
    assert "train: 19 classes, 76 images" in lines and "test: 8 classes, 32 images" in lines


def test_train_then_evaluate_writes_the_json_papers_report(omniglot: Path, tmp_path: Path) -> None:
    result = train(omniglot, tmp_path / "run", "--iterations", "3")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / RECORD_FILE).is_file() and (tmp_path / "run" / WEIGHTS_FILE).is_file()
    out = tmp_path / "eval.json"
    result = run("fewshot", "evaluate", "--run", str(tmp_path / "run"), "--episodes", "6", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    line = result.output.strip().splitlines()[-1]
    assert line == f"accuracy {report['accuracy']:.4f} ± {report['ci95']:.4f} (95 % CI, 6 episodes)"
    assert {"accuracy", "ci95", "episodes", "ways", "shots", "split", "algorithm"} <= set(report)
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["ci95"] <= 1
    assert (report["episodes"], report["ways"], report["shots"], report["split"]) == (6, 2, 1, "test")
    assert report["algorithm"] == "protonet"


def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights(omniglot: Path, tmp_path: Path) -> None:
    """MAML (an inner loop, BatchNorm, episodes drawn from the run's generator): 2 iterations, then a
    resume to 4, equals 4 straight; the learned rates of Meta-SGD come back with the run too."""
    extra = ("--inner-lr", "0.1")
    assert (
        train(omniglot, tmp_path / "straight", "--iterations", "4", *extra, algorithm="maml").exit_code == 0
    )
    assert train(omniglot, tmp_path / "resumed", "--iterations", "2", *extra, algorithm="maml").exit_code == 0
    result = train(omniglot, tmp_path / "resumed", "--iterations", "4", "--resume", *extra, algorithm="maml")
    assert result.exit_code == 0, result.output
    straight = load_state(tmp_path / "straight" / WEIGHTS_FILE)["model"]
    resumed = load_state(tmp_path / "resumed" / WEIGHTS_FILE)["model"]
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_meta_sgd_rates_are_saved_with_the_run(omniglot: Path, tmp_path: Path) -> None:
    assert train(omniglot, tmp_path / "msgd", "--iterations", "2", algorithm="metasgd").exit_code == 0
    loaded = load_run(tmp_path / "msgd")
    rates = loaded.algorithm.extra_parameters()
    assert rates and set(rates) == {f"lr.{name}" for name, _ in loaded.model.named_parameters()}
    assert any(not torch.allclose(r, torch.full_like(r, 0.01)) for r in rates.values())  # they learned


@pytest.mark.parametrize(
    "args, words",
    [
        (["--algorithm", "nope"], "unknown algorithm 'nope'"),
        (["--algorithm", "protonet", "--inner-lr", "0.1"], "algorithm 'protonet' has no inner_lr"),
        (["--algorithm", "maml", "--inner-lr", "nan"], "inner_lr must be a positive finite number"),
        (["--algorithm", "maml", "--inner-lr", "-1"], "inner_lr must be a positive finite number"),
        (["--algorithm", "protonet", "--ways", "80", "--query", "1"], "fewer than the 80 ways"),
        (
            ["--algorithm", "protonet", "--query", "15"],
            "character01: class 'Atlantean/character01' of omniglot/train has 4 items",
        ),
        (["--algorithm", "protonet", "--outer-lr", "inf"], "outer_lr must be a positive finite number"),
        (["--algorithm", "protonet", "--resume", "--overwrite"], "either --resume"),
        (["--algorithm", "protonet", "--device", "cuda:7"], "--device"),
    ],
)
def test_bad_training_input_is_one_line_exit_2_before_training(
    omniglot: Path, tmp_path: Path, args: list[str], words: str
) -> None:
    result = run(
        "fewshot", "train", "--dataset", "omniglot", "--root", str(omniglot), "--iterations", "2",
        "--out", str(tmp_path / "run"), "--no-progress", *args,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoint").exists()  # nothing trained, nothing half-written


def test_omniglot_needs_its_folder(tmp_path: Path) -> None:
    result = run("fewshot", "train", "--dataset", "omniglot", "--algorithm", "protonet", "--iterations", "1",
                 "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.exit_code == 2 and "needs --root" in result.output


def test_a_previous_run_is_kept_unless_resumed_or_overwritten(omniglot: Path, tmp_path: Path) -> None:
    assert train(omniglot, tmp_path / "run", "--iterations", "1").exit_code == 0
    result = train(omniglot, tmp_path / "run", "--iterations", "1")
    assert result.exit_code == 2 and "--resume to continue it or --overwrite to replace it" in result.output
    assert train(omniglot, tmp_path / "run", "--iterations", "1", "--overwrite").exit_code == 0


def test_evaluate_refuses_what_the_run_cannot_do(omniglot: Path, tmp_path: Path) -> None:
    assert train(omniglot, tmp_path / "run", "--iterations", "1", algorithm="fomaml").exit_code == 0
    wide = run("fewshot", "evaluate", "--run", str(tmp_path / "run"), "--ways", "5", "--episodes", "2")
    assert wide.exit_code == 2 and "--ways 5: the run's head has 2 outputs" in wide.output
    split = run("fewshot", "evaluate", "--run", str(tmp_path / "run"), "--split", "holdout")
    assert split.exit_code == 2 and "has no split 'holdout'" in split.output
    (tmp_path / "empty").mkdir()
    empty = run("fewshot", "evaluate", "--run", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "not a few-shot run" in empty.output
    (tmp_path / "run" / WEIGHTS_FILE).write_bytes(b"truncated")
    damaged = run("fewshot", "evaluate", "--run", str(tmp_path / "run"))
    assert damaged.exit_code == 2 and WEIGHTS_FILE in damaged.output and "Traceback" not in damaged.output
