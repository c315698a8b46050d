"""`metalearn iqa ...` through Click's test runner: help, data tables, one-line errors, train -> predict/evaluate."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from metalearn.cli import main
from metalearn_iqa.cli import iqa
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, load_model, save_model
from tests.conftest import KADID_LEVELS, KADID_REFS, KADID_TYPES
from tests.iqa.fixtures import make_tid2013
from tests.iqa.spies import SizeSpy

TRAIN_FAST = [
    "--iterations", "1", "--train-crop", "32", "--batch-size", "2", "--inner-steps", "1",
    "--tasks-per-batch", "2", "--device", "cpu",
]  # fmt: skip
SCRATCH = ["--no-pretrained"]  # fixtures train offline: no ImageNet weights


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written to the home folder or the working directory."""
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit code 2, a single `Error: ...` line naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three images (one in a subfolder, mixed suffix case) and a file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    (folder / "sub").mkdir()
    for name in ("a.png", "b.JPG", "sub/c.bmp"):
        Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image\n")
    return folder


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(), ModelConfig(), tmp_path_factory.mktemp("model") / "random.pt")


# -------------------------------------------------------------------------------------------- discovery


def test_iqa_group_is_discovered_through_the_entry_point() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "iqa" in result.output
    assert main.get_command(None, "iqa") is iqa  # type: ignore[arg-type]


def test_help_of_every_iqa_command() -> None:
    assert run("iqa", "--help").exit_code == 0
    names = iqa.list_commands(click.Context(iqa))  # the lazy group lists commands it has not imported
    assert {"data", "train", "finetune", "evaluate", "predict", "lodo", "cross", "demo"} <= set(names)
    for name in names:
        result = run("iqa", name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_algorithms_lists_the_core_algorithms() -> None:
    result = run("algorithms")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert {"metaiqa", "maml", "reptile"} <= listed


# ------------------------------------------------------------------------------------------------- data


def test_data_writes_the_table(tmp_path: Path) -> None:
    expected = make_tid2013(tmp_path / "tid")
    result = run("iqa", "data", "--dataset", "tid2013", "--root", str(tmp_path / "tid"), "--out", "t.csv")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(expected) == 12
    assert {"path", "score"} <= set(rows[0])
    for row in rows:
        assert 0.0 <= float(row["score"]) <= 1.0
        assert float(row["raw_score"]) == pytest.approx(expected[Path(row["path"]).name])
        assert Path(row["path"]).is_file()


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_dataset(tmp_path: Path) -> None:
    result = run("iqa", "data", "--dataset", "nosuchdb", "--root", str(tmp_path), "--out", "t.csv")
    assert_one_line_error(result, "nosuchdb", "tid2013")


def test_missing_root_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run("iqa", "data", "--dataset", "tid2013", "--root", str(missing), "--out", "t.csv")
    assert_one_line_error(result, str(missing), "not found")
    assert not (tmp_path / "t.csv").exists()


def test_root_without_score_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("iqa", "data", "--dataset", "kadid10k", "--root", str(tmp_path / "empty"), "--out", "t.csv")
    assert_one_line_error(result, "dmos.csv", "not found")


def test_predict_on_a_missing_path(tmp_path: Path, random_model: Path) -> None:
    missing = tmp_path / "no-such-image.png"
    result = run("iqa", "predict", str(missing), "--checkpoint", str(random_model))
    assert_one_line_error(result, str(missing))


def test_predict_without_any_prior(tmp_path: Path, image_folder: Path) -> None:
    (tmp_path / "outputs").mkdir()
    result = run("iqa", "predict", str(image_folder))
    line = assert_one_line_error(result, "no prior found", str(tmp_path / "outputs"))
    assert "metalearn iqa train" in line and "--checkpoint" in line


def test_pretrained_and_weights_together(tmp_path: Path, kadid_root: Path) -> None:
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root),
        "--pretrained", "--weights", str(tmp_path / "w.pt"), *TRAIN_FAST,
    )  # fmt: skip
    assert_one_line_error(result, "--pretrained", "--weights")
    assert not (tmp_path / "outputs").exists()


def test_evaluate_with_a_corrupt_checkpoint(tmp_path: Path, kadid_root: Path) -> None:
    bad = tmp_path / "prior.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint\n\n at all")
    result = run(
        "iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root), "--checkpoint", str(bad)
    )
    assert_one_line_error(result, str(bad))


def test_train_with_a_bad_type_list(kadid_root: Path) -> None:
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), "--exclude-types", "1,x",
        *TRAIN_FAST, *SCRATCH,
    )  # fmt: skip
    assert_one_line_error(result, "--exclude-types", "'1,x'")


# ------------------------------------------------------------------------------ train, then use the prior


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, kadid_root: Path) -> Path:
    """`iqa train` with no --out: the prior lands in $METALEARN_OUTPUT/prior-metaiqa/."""
    outputs = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METALEARN_OUTPUT", str(outputs))
        torch.set_num_threads(1)
        result = run(
            "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *TRAIN_FAST, *SCRATCH
        )
    assert result.exit_code == 0, result.output
    prior = outputs / "prior-metaiqa" / "prior.pt"
    assert prior.is_file() and str(prior) in result.output
    load_model(prior)
    return outputs


def test_predict_picks_the_newest_prior(
    trained: Path, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # older, unreadable priors on both sides of the trained one alphabetically: only the newest one loads
    for name in ("a-old", "z-old"):
        stale = trained / name / "prior.pt"
        stale.parent.mkdir(exist_ok=True)
        stale.write_bytes(b"stale")
        os.utime(stale, (1_000_000, 1_000_000))
    monkeypatch.setenv("METALEARN_OUTPUT", str(trained))
    result = run(
        "iqa",
        "predict",
        str(image_folder),
        "--csv",
        "out.csv",
        "--saliency",
        "maps",
        "--crop",
        "32",
        "--crops",
        "5",
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = sorted(Path(r["path"]).name for r in rows)
    assert names == ["a.png", "b.JPG", "c.bmp"]
    assert all(np.isfinite(float(r["score"])) for r in rows)
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert maps == ["a_png_gradient.png", "b_JPG_gradient.png", "c_bmp_gradient.png"]
    for path in (tmp_path / "maps").iterdir():
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 100


def test_predict_matches_an_explicit_checkpoint(trained: Path, image_folder: Path) -> None:
    prior = trained / "prior-metaiqa" / "prior.pt"
    result = run("iqa", "predict", str(image_folder / "a.png"), "--checkpoint", str(prior))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("a.png")
    float(lines[0].split()[0])


def test_evaluate_writes_json(trained: Path, kadid_root: Path, tmp_path: Path) -> None:
    prior = trained / "prior-metaiqa" / "prior.pt"
    result = run(
        "iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root),
        "--checkpoint", str(prior), "--json", "m.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["dataset"] == "kadid10k" and metrics["checkpoint"] == str(prior)
    assert metrics["n"] == KADID_REFS * len(KADID_TYPES) * len(KADID_LEVELS)
    for key in ("srocc", "plcc", "plcc_logistic", "krcc", "rmse"):
        assert np.isfinite(metrics[key])
    assert -1.0 <= metrics["srocc"] <= 1.0
    assert "srocc" in result.output


def test_finetune_writes_a_loadable_model(trained: Path, kadid_root: Path, tmp_path: Path) -> None:
    prior = trained / "prior-metaiqa"
    result = run(
        "iqa", "finetune", "--checkpoint", str(prior), "--dataset", "kadid10k", "--root", str(kadid_root),
        "--epochs", "1", "--batch-size", "2", "--train-crop", "32", "--out", "ft.pt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tuned, config = load_model(tmp_path / "ft.pt")
    original, original_config = load_model(prior / "prior.pt")
    assert config == original_config
    a, b = tuned.state_dict(), original.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a), "fine-tuning changed no weight"


# ------------------------------------------------------------------------------- what reaches the model


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SizeSpy:
    """Every command that loads a model gets this spy instead."""
    model = SizeSpy()
    monkeypatch.setattr("metalearn_iqa.training.prior.load_prior", lambda path: model)
    return model


def test_evaluate_scores_whole_images_by_default(spy: SizeSpy, kadid_root: Path, tmp_path: Path) -> None:
    args = ["iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root), "--checkpoint", "m.pt"]
    result = run(*args, "--json", "m.json")
    assert result.exit_code == 0, result.output
    assert spy.sizes() == {(8, 10)}  # the fixture's images, uncropped
    assert json.loads((tmp_path / "m.json").read_text())["view"]["crop"] is None
    spy.shapes.clear()
    result = run(*args, "--crop", "32", "--crops", "5")
    assert result.exit_code == 0, result.output
    assert spy.sizes() == {(32, 32)} and sum(s[0] for s in spy.shapes) == 5 * 24


def test_predict_scores_whole_images_by_default(spy: SizeSpy, image_folder: Path) -> None:
    result = run("iqa", "predict", str(image_folder), "--checkpoint", "m.pt", "--saliency", "maps")
    assert result.exit_code == 0, result.output
    assert spy.sizes() == {(12, 9)}
    assert sum(s[0] for s in spy.shapes) == 3 + 3  # three scored together, three gradient maps


def test_predict_downscales_large_photos(spy: SizeSpy, tmp_path: Path) -> None:
    Image.fromarray(np.full((40, 1100, 3), 128, dtype=np.uint8)).save(tmp_path / "wide.png")
    assert run("iqa", "predict", "wide.png", "--checkpoint", "m.pt").exit_code == 0
    assert run("iqa", "predict", "wide.png", "--checkpoint", "m.pt", "--max-side", "550").exit_code == 0
    assert run("iqa", "predict", "wide.png", "--checkpoint", "m.pt", "--max-side", "0").exit_code == 0
    assert [s[-2:] for s in spy.shapes] == [(37, 1024), (20, 550), (40, 1100)]


def test_five_crops_without_a_crop_size(spy: SizeSpy, image_folder: Path) -> None:
    result = run("iqa", "predict", str(image_folder), "--checkpoint", "m.pt", "--crops", "5")
    assert_one_line_error(result, "--crop N")


# ------------------------------------------------------------------------ initialisation and provenance


@pytest.mark.parametrize("command", ["train", "lodo", "cross"])
def test_imagenet_by_default_offline_is_a_one_line_error(
    command: str, kadid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    downloads: list[str] = []

    def offline(url: str, *args: object, **kw: object) -> None:
        downloads.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    data = ["--dataset", "kadid10k", "--root", str(kadid_root)]
    if command == "cross":
        data = ["--prior-dataset", "kadid10k", "--prior-root", str(kadid_root), "--target", "kadid10k",
                "--target-root", str(kadid_root)]  # fmt: skip
    result = run("iqa", command, *data, *TRAIN_FAST)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "--weights PATH" in errors[0] and "--no-pretrained" in errors[0]
    assert lines == errors  # nothing printed besides the error
    assert len(downloads) == 1 and "resnet18" in downloads[0]  # ImageNet was the default


def test_cross_reads_the_given_priors_algorithm_and_init(kadid_root: Path, tmp_path: Path) -> None:
    from metalearn_iqa.training.prior import PriorConfig

    folder = tmp_path / "my-prior"
    save_model(build_model(), ModelConfig(), folder / "prior.pt")
    summary = {"config": PriorConfig(algorithm="reptile", model=ModelConfig(pretrained="none")).to_dict()}
    (folder / "prior.json").write_text(json.dumps(summary))
    with pytest.warns(UserWarning, match="older prior without its run record"):  # saved without a record
        result = run(
            "iqa", "cross", "--prior", str(folder), "--target", "kadid10k", "--target-root", str(kadid_root),
            "--repeats", "1", "--finetune-epochs", "1", "--batch-size", "4", "--train-crop", "32", "--out", "out",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "cross-kadid10k-reptile.json").read_text())
    assert report["algorithm"] == "reptile" and report["init"] == "scratch"
    assert report["prior"] == str(folder)
    assert report["config"]["finetune"]["epochs"] == 1 and report["config"]["eval"]["crop"] is None
    assert "n/a" not in (tmp_path / "out" / "cross-kadid10k-reptile.md").read_text()


# ----------------------------------------------------------------------------- backbone, budget, outer step

SMALL_FAST = ["--train-crop", "32", "--batch-size", "2", "--inner-steps", "1", "--tasks-per-batch", "1",
              "--device", "cpu", "--backbone", "small", "--width", "4"]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--pretrained"], ("--pretrained", "small")),
        (["--weights", "w.pt"], ("--weights", "small")),
        (["--head", "authors"], ("--head authors", "resnet18")),
    ],
)
def test_small_backbone_bad_combinations(
    extra: list[str], fragments: tuple[str, ...], kadid_root: Path
) -> None:
    result = run("iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST, *extra)
    assert_one_line_error(result, *fragments)


def test_width_without_the_small_backbone(kadid_root: Path) -> None:
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *TRAIN_FAST, "--width", "8"
    )
    assert_one_line_error(result, "--width", "--backbone small")


def test_train_small_backbone_from_scratch_by_epochs(
    kadid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object, **kw: object) -> None:
        raise AssertionError("the small backbone must not fetch ImageNet weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
        "--algorithm", "baseline", "--epochs", "0.5", "--outer-optimizer", "sgd", "--out", "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # 24 images in batches of 2: an epoch is 12 passes; half an epoch of plain training is 6 one-batch steps
    assert "6 iterations, 6 forward+backward passes of 2 crops (0.50 epochs of 24 images)" in result.output
    summary = json.loads((tmp_path / "run" / "prior.json").read_text())
    assert summary["iterations"] == 6 and summary["passes"] == 6 and summary["init"] == "scratch"
    assert summary["config"]["outer_optimizer"] == "sgd" and summary["config"]["epochs"] == 0.5
    _, config = load_model(tmp_path / "run" / "prior.pt")
    assert config == ModelConfig(backbone="small", width=4, pretrained="none")


def test_iterations_override_epochs(kadid_root: Path, tmp_path: Path) -> None:
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
        "--epochs", "50", "--iterations", "2", "--out", "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "prior.json").read_text())
    assert summary["iterations"] == 2 and summary["passes"] == 2 * 2  # metaiqa, k = 1, T = 1: 2 passes each


def test_algorithm_help_explains_the_baselines() -> None:
    result = run("iqa", "train", "--help")
    text = " ".join(result.output.split())
    assert "pooled-baseline" in text and "fair" in text and "--outer-optimizer" in text
    assert "--epochs" in text and "--backbone" in text


# --------------------------------------------------------------------------------- non-finite weights


def _nan_prior(path: Path) -> Path:
    """A prior file in the right format whose weights hold a NaN (as a diverged run would have written)."""
    model = build_model(ModelConfig(backbone="small", width=4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    next(v for v in state.values() if v.is_floating_point())[0] = float("nan")
    save_model(model, ModelConfig(backbone="small", width=4), path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = state
    torch.save(payload, path)
    return path


def test_diverged_training_is_a_one_line_error_and_writes_no_prior(kadid_root: Path, tmp_path: Path) -> None:
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
        "--iterations", "3", "--outer-lr", "1e30", "--out", "run",
    )  # fmt: skip
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "diverged at iteration" in errors[0] and "no checkpoint written" in errors[0]
    assert "prior written" not in result.output
    assert not (tmp_path / "run" / "prior.pt").exists() and not (tmp_path / "run" / "prior.json").exists()


def test_a_failed_run_removes_the_previous_prior(kadid_root: Path, tmp_path: Path) -> None:
    stale = tmp_path / "run" / "prior.pt"
    save_model(
        build_model(ModelConfig(backbone="small", width=4)), ModelConfig(backbone="small", width=4), stale
    )
    result = run(
        "iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
        "--iterations", "3", "--outer-lr", "1e30", "--out", "run", "--overwrite",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "diverged" in result.output
    assert not stale.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "finetune"])
def test_a_nan_prior_is_a_one_line_error_naming_the_file(
    command: str, tmp_path: Path, image_folder: Path, kadid_root: Path
) -> None:
    prior = _nan_prior(tmp_path / "nan" / "prior.pt")
    data = ["--dataset", "kadid10k", "--root", str(kadid_root)]
    args = {
        "predict": [str(image_folder), "--checkpoint", str(prior)],
        "evaluate": [*data, "--checkpoint", str(prior)],
        "finetune": ["--checkpoint", str(prior), *data, "--epochs", "1", "--out", "ft.pt"],
    }[command]
    result = run("iqa", command, *args)
    assert_one_line_error(result, str(prior), "non-finite")
    assert not (tmp_path / "ft.pt").exists()


def test_diverged_finetuning_is_a_one_line_error_and_writes_nothing(kadid_root: Path, tmp_path: Path) -> None:
    prior = save_model(
        build_model(ModelConfig(backbone="small", width=4)), ModelConfig(backbone="small", width=4), "p.pt"
    )
    result = run(
        "iqa", "finetune", "--checkpoint", str(prior), "--dataset", "kadid10k", "--root", str(kadid_root),
        "--epochs", "2", "--lr", "1e30", "--batch-size", "4", "--train-crop", "32", "--out", "ft.pt",
    )  # fmt: skip
    assert_one_line_error(result, "fine-tuning diverged in epoch 1")
    assert not (tmp_path / "ft.pt").exists()


# --------------------------------------------------------------------------------------- large images


def test_predict_holds_at_most_one_batch_of_decoded_images(
    spy: SizeSpy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalearn_iqa.evaluation import predict as predict_module

    held: list[int] = []

    class Store(predict_module.ImageStore):
        def __call__(self, path: str) -> torch.Tensor:
            image = super().__call__(path)
            held.append(self.held)
            return image

    monkeypatch.setattr(predict_module, "ImageStore", Store)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(np.full((6, 7, 3), i, dtype=np.uint8)).save(folder / f"{i:02d}.png")
    result = run("iqa", "predict", str(folder), "--checkpoint", "m.pt")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 40 and len(held) == 40
    assert max(held) <= predict_module.EvalConfig().batch_size < 40


@pytest.mark.parametrize("side", [11, 21])  # past Pillow's limit (a warning), past twice it (an error)
def test_predict_on_a_decompression_bomb_is_a_one_line_error(
    side: int, spy: SizeSpy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(np.zeros((10, side, 3), dtype=np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    result = run("iqa", "predict", "bomb.png", "--checkpoint", "m.pt")
    assert_one_line_error(result, "bomb.png", "too large to decode safely", f"{10 * side} pixels")


def test_evaluate_with_constant_predictions_says_undefined(kadid_root: Path, tmp_path: Path) -> None:
    config = ModelConfig(backbone="small", width=4, pretrained="none")
    model = build_model(config)
    with torch.no_grad():
        for param in model.head.parameters():
            param.zero_()  # every image gets the same score
    save_model(model, config, tmp_path / "flat.pt")
    with pytest.warns(RuntimeWarning, match="undefined"):
        result = run(
            "iqa", "evaluate", "--dataset", "kadid10k", "--root", str(kadid_root),
            "--checkpoint", str(tmp_path / "flat.pt"), "--json", "m.json",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "undefined" in result.output and "0.0000" not in result.output.split("rmse")[0]
    assert "warning: the correlations are undefined" in result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["srocc"] is metrics["plcc"] is metrics["krcc"] is None


def test_saliency_maps_of_same_named_images_do_not_overwrite_each_other(
    random_model: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("a.png", "a.jpg", "sub/a.png"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / name)
    result = run("iqa", "predict", str(photos), "--checkpoint", str(random_model), "--saliency", "maps")
    assert result.exit_code == 0, result.output
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert maps == ["a_jpg_gradient.png", "a_png-2_gradient.png", "a_png_gradient.png"]
    assert result.output.count("gradient map -> ") == 3


def test_data_check_names_an_image_that_does_not_decode(tmp_path: Path) -> None:
    make_tid2013(tmp_path / "tid")
    root = str(tmp_path / "tid")
    result = run("iqa", "data", "--dataset", "tid2013", "--root", root, "--check")
    assert result.exit_code == 0 and "12 images from tid2013 decoded" in result.output, result.output
    images = sorted((tmp_path / "tid" / "distorted_images").iterdir())
    images[0].write_bytes(b"")  # 0 bytes
    images[1].write_bytes(images[1].read_bytes()[:20])  # truncated
    result = run("iqa", "data", "--dataset", "tid2013", "--root", root, "--check", "--out", "t.csv")
    line = assert_one_line_error(result, images[0].name, "cannot decode", "1 more")
    assert not (tmp_path / "t.csv").exists()  # nothing written from a database that cannot train
    assert "Error" in line
    assert_one_line_error(run("iqa", "data", "--dataset", "tid2013", "--root", root), "--out", "--check")
