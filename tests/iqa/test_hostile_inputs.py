"""Issue 20's hostile inputs through `metalearn iqa`: EXIF-rotated photos, GIFs and other files in a folder,
truncated priors, and a disk that fills up (or a folder that cannot be written) while a command writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from PIL import Image

from metalearn_iqa.images.decode import image_shape, read_image
from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, save_model
from tests.helpers import full_disk_after
from tests.iqa.test_cli import SMALL_FAST, assert_one_line_error, run

SMALL = ModelConfig(backbone="small", width=4, pretrained="none")
TURNS = {  # EXIF orientation -> the transpose that shows the stored pixels upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(SMALL), SMALL, tmp_path_factory.mktemp("prior") / "prior.pt")


def _photo(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """Noise with a bright top-left corner, so any turn or flip changes the pixels."""
    pixels = np.random.default_rng(seed).integers(0, 200, (size[1], size[0], 3), dtype=np.uint8)
    pixels[:8, :8] = 255
    return Image.fromarray(pixels)


def _with_orientation(photo: Image.Image, orientation: int, path: Path) -> Path:
    """`photo`'s pixels as stored, with an EXIF tag saying how to turn them upright (a camera's file)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo.save(path, exif=exif)
    return path


def error_line(result: Result, *fragments: str) -> str:
    """`assert_one_line_error` with the progress bars of a run that had started left out."""
    kept = [line for line in result.output.replace("\r", "\n").splitlines() if "it/s" not in line]
    result.output_bytes = "\n".join(kept).encode()
    return assert_one_line_error(result, *fragments)


def _scores(output: str) -> dict[str, str]:
    return {Path(line.split()[1]).name: line.split()[0] for line in output.splitlines() if line[:1].isdigit()}


# ------------------------------------------------------------------------------------ EXIF orientation


@pytest.mark.parametrize("orientation", sorted(TURNS))
def test_an_exif_rotated_photo_decodes_as_its_physically_rotated_twin(
    tmp_path: Path, orientation: int
) -> None:
    photo = _photo()
    tagged = _with_orientation(photo, orientation, tmp_path / "tagged.png")
    twin = tmp_path / "twin.png"
    photo.transpose(TURNS[orientation]).save(twin)
    assert torch.equal(read_image(tagged), read_image(twin))
    assert image_shape(str(tagged)) == image_shape(str(twin)) == tuple(read_image(twin).shape[-2:])
    assert not torch.equal(read_image(tagged), torch.from_numpy(np.array(photo)).permute(2, 0, 1))


def test_predict_and_saliency_of_an_exif_rotated_photo_match_its_twin(tmp_path: Path, prior: Path) -> None:
    photo = _photo(1, (64, 40))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tagged = _with_orientation(photo, 6, tmp_path / "a" / "photo.png")
    photo.transpose(TURNS[6]).save(tmp_path / "b" / "photo.png")
    outputs = []
    for folder in ("a", "b"):
        result = run("iqa", "predict", "--checkpoint", str(prior), "--saliency", f"maps-{folder}",
                     str(tmp_path / folder / "photo.png"))  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(_scores(result.output))
    assert outputs[0] == outputs[1]  # exactly the same score
    maps = [np.asarray(Image.open(tmp_path / f"maps-{f}" / "photo_png_gradient.png")) for f in ("a", "b")]
    assert np.array_equal(maps[0], maps[1])  # the map of the upright photo, the right way up
    assert tagged.exists()


# ------------------------------------------------------------------------------- formats in a folder


def test_predict_reads_gifs_and_every_format_pillow_reads_and_reports_other_files(
    tmp_path: Path, prior: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.gif", "c.ppm", "d.tga"):
        _photo(2).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    result = run("iqa", "predict", "--checkpoint", str(prior), str(folder))
    assert result.exit_code == 0, result.output
    assert set(_scores(result.output)) == {"a.png", "b.gif", "c.ppm", "d.tga"}
    assert "1 file(s) not read, not in an image format: notes.txt" in result.output


def test_a_folder_without_images_names_itself(tmp_path: Path, prior: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.txt").write_text("x")
    result = run("iqa", "predict", "--checkpoint", str(prior), str(tmp_path / "docs"))
    assert result.exit_code == 2 and "no image files" in result.output and "docs" in result.output


# --------------------------------------------------------------------------------------- damaged prior


@pytest.mark.parametrize("keep", [0.001, 0.5, 0.999])
def test_a_truncated_prior_is_named_and_called_damaged(tmp_path: Path, prior: Path, keep: float) -> None:
    data = prior.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: max(1, int(len(data) * keep))])
    image = tmp_path / "x.png"
    _photo().save(image)
    for command in (["predict", str(image)], ["evaluate", "--dataset", "synthetic"]):
        result = run("iqa", command[0], "--checkpoint", str(cut), *command[1:])
        line = assert_one_line_error(result, str(cut), "damaged or truncated")
        assert "Errno" not in line


# ------------------------------------------------------------------------------------------- full disk


def test_train_on_a_full_disk_names_the_file_and_the_rerun_is_not_blocked(kadid_root: Path) -> None:
    args = ["iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
            "--iterations", "2", "--out", "run"]  # fmt: skip
    with full_disk_after(8192):
        result = run(*args)
    line = error_line(result, "run/checkpoint/checkpoint.pt", "File too large")
    assert "Traceback" not in line and not Path("run/prior.pt").exists()
    assert not list(Path("run").rglob(".*.tmp"))  # no temporary file left behind
    rerun = run(*args)
    if rerun.exit_code == 2:  # the first checkpoint made it: the run continues, it is not lost
        assert "--resume" in rerun.output
        rerun = run(*args, "--resume")
    assert rerun.exit_code == 0, rerun.output
    assert Path("run/prior.pt").exists()


def test_finetune_and_saliency_on_a_full_disk_name_their_file(
    kadid_root: Path, prior: Path, tmp_path: Path
) -> None:
    with full_disk_after(4096):
        result = run("iqa", "finetune", "--checkpoint", str(prior), "--dataset", "kadid10k", "--root",
                     str(kadid_root), "--epochs", "1", "--train-crop", "32", "--batch-size", "2", "--out", "tuned.pt")  # fmt: skip
    error_line(result, "tuned.pt", "File too large")
    assert not Path("tuned.pt").exists()
    image = tmp_path / "x.png"
    _photo(3, (200, 160)).save(image)
    with full_disk_after(4096):
        result = run("iqa", "predict", "--checkpoint", str(prior), "--saliency", "maps", str(image))
    assert result.exit_code == 2, result.output
    assert "maps/x_png_gradient.png" in result.output and "File too large" in result.output
    assert "Traceback" not in result.output


def test_a_crop_larger_than_every_image_is_said_not_silent(kadid_root: Path) -> None:
    """The 8x10 fixture images under a 32-pixel crop: upscaled (what the tests rely on), and said so."""
    result = run("iqa", "train", "--dataset", "kadid10k", "--root", str(kadid_root), *SMALL_FAST,
                 "--iterations", "1", "--out", "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    note = "note: --train-crop 32 is larger than every image (the largest is 8 px on its shorter side)"
    assert note in result.output
