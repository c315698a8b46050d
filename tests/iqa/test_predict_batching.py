"""Prediction's batching (by size, decoded ahead in workers) never changes a score, and errors stay one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.evaluation.predict import EvalConfig, predict_records
from metalearn_iqa.images.decode import read_image
from metalearn_iqa.images.transforms import normalise
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Nine images in three sizes (one to be downscaled), interleaved so that batching by size reorders them."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    shapes = [(40, 56), (64, 48), (90, 120)] * 3
    paths = []
    for i, shape in enumerate(shapes):
        path = root / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="small", width=4, hidden=8)).eval()


@pytest.mark.parametrize("batch_size, workers", [(4, 0), (32, 0), (32, 2)])
def test_batched_scores_equal_the_per_image_path(
    photos: list[str], model: torch.nn.Module, batch_size: int, workers: int
) -> None:
    """Oracle: each image alone through the model, in the order given."""
    with torch.no_grad():
        alone = []
        for path in photos:
            image = read_image(path)
            if max(image.shape[1:]) > 64:
                image = (
                    torch.nn.functional.interpolate(
                        image[None].float(), size=(48, 64), mode="bilinear", antialias=True
                    )[0]
                    .round()
                    .to(torch.uint8)
                )
            alone.append(float(model(normalise(image[None]))))
    config = EvalConfig(max_side=64, batch_size=batch_size, workers=workers)
    scores = predict_records(model, photos, config)
    assert scores == pytest.approx(alone, abs=1e-4)
    assert scores == pytest.approx(
        predict_records(model, photos, EvalConfig(max_side=64, batch_size=1)), abs=1e-5
    )


def test_a_bad_image_decoded_in_a_worker_is_a_one_line_error(
    photos: list[str], tmp_path: Path, model: torch.nn.Module
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(Path(photos[0]).read_bytes()[:70])
    with pytest.raises(DatasetError, match=r"broken\.png: cannot decode image") as caught:
        predict_records(model, [*photos, str(bad)], EvalConfig(batch_size=4, workers=2))
    assert "\n" not in str(caught.value)


def test_predict_from_the_cli_prints_the_same_scores_with_workers(
    photos: list[str], model: torch.nn.Module, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from metalearn.cli import main
    from metalearn_iqa.model.weights import save_model

    save_model(model, model.config, tmp_path / "m.pt")  # type: ignore[arg-type]
    folder = str(Path(photos[0]).parent)
    outputs = []
    for workers in ("0", "2"):
        args = ["iqa", "predict", folder, "--checkpoint", str(tmp_path / "m.pt"), "--workers", workers]
        result = CliRunner().invoke(main, args, catch_exceptions=True)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == len(photos)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predict_on_cuda_equals_the_cpu(photos: list[str], model: torch.nn.Module) -> None:
    """uint8 pinned, moved, normalised on the device: the same scores as on the CPU."""
    import copy

    config = EvalConfig(max_side=64, batch_size=4, workers=1)
    on_cpu = predict_records(model, photos, config)
    on_gpu = predict_records(copy.deepcopy(model).cuda(), photos, config)
    assert on_gpu == pytest.approx(on_cpu, abs=1e-3)
