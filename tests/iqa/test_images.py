"""Image decoding: one rule for every mode (16-bit, 32-bit, float, palette, transparency), bombs refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metalearn_iqa.data.records import DatasetError
from metalearn_iqa.images.decode import read_image, to_rgb

RAMP = np.round(np.linspace(0, 65535, 64)).astype(np.uint16)[None].repeat(5, axis=0)  # 5 x 64 gradient


def _grey(decoded: np.ndarray) -> np.ndarray:
    """The single grey channel of a decoded grey image (R, G and B must agree)."""
    assert decoded.dtype == np.uint8 and decoded.shape[-1] == 3
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 1] == decoded[..., 2]).all()
    return decoded[..., 0]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_files_keep_their_gradient(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ramp{suffix}"
    Image.fromarray(RAMP).save(path)
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")
    grey = read_image(path).permute(1, 2, 0).numpy()[..., 0]
    np.testing.assert_array_equal(grey, np.round(RAMP / 257).astype(np.uint8))
    assert grey.min() == 0 and grey.max() == 255 and (np.diff(grey[0].astype(int)) >= 0).all()
    assert len(np.unique(grey)) == 64  # convert("RGB") made all but the first pixel 255


def test_16_bit_big_endian() -> None:
    img = Image.fromarray(RAMP.astype(">u2"))
    assert img.mode == "I;16B"
    np.testing.assert_array_equal(_grey(to_rgb(img)), np.round(RAMP / 257))


def test_32_bit_integers() -> None:
    as_16_bit = Image.fromarray(RAMP.astype(np.int32))
    assert as_16_bit.mode == "I"
    np.testing.assert_array_equal(_grey(to_rgb(as_16_bit)), np.round(RAMP / 257))
    wide = (RAMP.astype(np.int64) * 1000 - 5000).astype(np.int32)  # beyond 16 bits, a few negatives
    grey = _grey(to_rgb(Image.fromarray(wide)))
    expected = np.clip(np.round(wide * 255.0 / wide.max()), 0, 255)
    np.testing.assert_array_equal(grey, expected)
    assert grey.max() == 255 and grey[0, 0] == 0


def test_floats() -> None:
    unit = np.linspace(-0.5, 1.0, 64, dtype=np.float32)[None].repeat(3, axis=0)
    unit[0, 10] = np.nan
    grey = _grey(to_rgb(Image.fromarray(unit)))
    np.testing.assert_array_equal(grey[1], np.clip(np.round(unit[1].astype(np.float64) * 255), 0, 255))
    assert grey[0, 10] == 0
    large = (np.arange(64, dtype=np.float32) * 10)[None]
    np.testing.assert_array_equal(_grey(to_rgb(Image.fromarray(large))), np.round(large * 255 / 630))


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)  # index 0: black (transparent), 1: red
    img.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as reopened:
        assert reopened.mode == "P" and "transparency" in reopened.info
    rgb = read_image(tmp_path / "p.png").permute(1, 2, 0).numpy()
    flat = rgb.reshape(-1, 3).tolist()
    white, red = [255, 255, 255], [200, 10, 10]
    assert flat == [white, red, white, red, red, red, white, white]


def test_grey_with_alpha_is_composited_on_white() -> None:
    la = np.stack([np.full((2, 3), 40, np.uint8), np.array([[0, 128, 255]] * 2, np.uint8)], axis=-1)
    rgb = to_rgb(Image.fromarray(la, mode="LA"))
    assert _grey(rgb)[0].tolist() == [255, round(40 * 128 / 255 + 255 * 127 / 255), 40]
    pa = Image.new("P", (3, 2), 0)
    pa.putpalette([40, 40, 40] + [0] * 765)
    pa.putalpha(Image.fromarray(la[..., 1]))
    assert pa.mode == "PA"
    np.testing.assert_array_equal(to_rgb(pa), rgb)


@pytest.mark.parametrize("mode", ["1", "L", "CMYK", "RGB"])
def test_other_modes_convert_as_pillow_does(mode: str) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)).convert(mode)
    decoded = to_rgb(img)
    np.testing.assert_array_equal(decoded, np.asarray(img.convert("RGB")))
    assert decoded.shape == (4, 5, 3) and decoded.dtype == np.uint8


@pytest.mark.parametrize(
    "pixels", [10 * 11, 10 * 21]
)  # past the limit (Pillow warns), past twice it (raises)
def test_decompression_bombs_are_one_line_errors(
    pixels: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (pixels // 10, 10)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: too large to decode safely") and "\n" not in message
    assert f"({pixels} pixels; PIL.Image.MAX_IMAGE_PIXELS is 100)" in message
