"""A generated hostile corpus through the CLI: bad databases, images, checkpoints and paths.

Every case is built in `tmp_path` and run through `metalearn iqa ...` (Click's runner). Each must end with
exit code 2, a single `Error: ...` line naming the offending file, and nothing written that claims success
(no `prior.pt`, no result file). Images that are unusual but valid (16-bit, palette with transparency) must
score like their 8-bit RGB equivalents instead.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_iqa.model.network import ModelConfig
from metalearn_iqa.model.weights import build_model, save_model
from tests.conftest import write_kadid_like
from tests.iqa.fixtures import make_tid2013
from tests.iqa.test_cli import SMALL_FAST, assert_one_line_error, run

SMALL = ModelConfig(backbone="small", width=4, pretrained="none")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written to the home folder or the working directory."""
    monkeypatch.setenv("METALEARN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@dataclass
class Case:
    """A command line, the fragments its one error line must hold, and paths that must not exist after."""

    args: list[str]
    names: list[str]
    absent: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- builders


def kadid(tmp: Path) -> Path:
    """A small KADID-layout database (2 references x 2 types x 1 level) in `tmp/db`."""
    return write_kadid_like(tmp / "db", refs=2, types=(1, 9), levels=(1,))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def train_case(tmp: Path, root: Path, named: str, dataset: str = "kadid10k") -> Case:
    args = ["iqa", "train", "--dataset", dataset, "--root", str(root), *SMALL_FAST, "--iterations", "1"]
    return Case([*args, "--out", "run"], [named], [tmp / "run" / "prior.pt", tmp / "run" / "prior.json"])


def _score_file(tmp: Path, edit: Callable[[Path], object]) -> Case:
    root = kadid(tmp)
    edit(root / "dmos.csv")
    return train_case(tmp, root, str(root / "dmos.csv"))


def _rewrite_row(line: int, row: str) -> Callable[[Path], object]:
    def edit(path: Path) -> None:
        lines = path.read_text().splitlines()
        lines[line - 1] = row
        path.write_text("\n".join(lines) + "\n")

    return edit


def _score_folder(tmp: Path) -> Case:
    root = kadid(tmp)
    (root / "dmos.csv").unlink()
    (root / "dmos.csv").mkdir()
    return train_case(tmp, root, str(root / "dmos.csv"))


def _missing_image(tmp: Path) -> Case:
    root = kadid(tmp)
    (root / "images" / "I01_09_01.png").unlink()
    return train_case(tmp, root, "I01_09_01.png")


def _tid_scores(tmp: Path, data: bytes) -> Case:
    make_tid2013(tmp / "tid")
    (tmp / "tid" / "mos_with_names.txt").write_bytes(data)
    return train_case(tmp, tmp / "tid", str(tmp / "tid" / "mos_with_names.txt"), dataset="tid2013")


DATABASES: dict[str, Callable[[Path], Case]] = {
    "root missing": lambda tmp: train_case(tmp, tmp / "nowhere", str(tmp / "nowhere")),
    "score file missing": lambda tmp: _score_file(tmp, Path.unlink),
    "score file is a folder": _score_folder,
    "score file 0 bytes": lambda tmp: _score_file(tmp, lambda p: p.write_bytes(b"")),
    "score file undecodable": lambda tmp: _score_file(tmp, lambda p: p.write_bytes(b"\xff\xfe\x00\x81" * 64)),
    "score file truncated": lambda tmp: _score_file(tmp, lambda p: p.write_bytes(p.read_bytes()[:45])),
    "score out of range": lambda tmp: _score_file(tmp, _rewrite_row(2, "I01_01_01.png,I01.png,9.5,0.1")),
    "score negative": lambda tmp: _score_file(tmp, _rewrite_row(3, "I01_09_01.png,I01.png,-1,0.1")),
    "score not a number": lambda tmp: _score_file(tmp, _rewrite_row(2, "I01_01_01.png,I01.png,high,0.1")),
    "score not finite": lambda tmp: _score_file(tmp, _rewrite_row(2, "I01_01_01.png,I01.png,nan,0.1")),
    "duplicate, other score": lambda tmp: _score_file(tmp, _rewrite_row(3, "I01_01_01.png,I01.png,2,0.1")),
    "wrong columns": lambda tmp: _score_file(tmp, _rewrite_row(1, "image,reference,mos,var")),
    "extra column": lambda tmp: _score_file(tmp, _rewrite_row(2, "I01_01_01.png,I01.png,2,0.1,7")),
    "image missing": _missing_image,
    "tid scores undecodable": lambda tmp: _tid_scores(tmp, b"\x80\x81\xfe" * 40),
    "tid scores truncated": lambda tmp: _tid_scores(tmp, b"4.5 i01_01_1.bmp\n3."),
}


@pytest.mark.parametrize("name", list(DATABASES))
def test_bad_database(name: str, tmp_path: Path) -> None:
    check(DATABASES[name](tmp_path))


# --------------------------------------------------------------------------------------------- images


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_IMAGES: dict[str, Callable[[Path], object]] = {
    "0 bytes": lambda p: p.write_bytes(b""),
    "truncated": _truncated_png,
    "not an image": lambda p: p.write_text("a text file named .png\n"),
    "decompression bomb header": lambda p: p.write_bytes(png_header(30_000, 30_000)),
    "a folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
@pytest.mark.parametrize("command", ["data --check", "evaluate", "predict"])
def test_bad_image(command: str, name: str, tmp_path: Path, prior: Path) -> None:
    root = kadid(tmp_path)
    image = root / "images" / "I02_09_01.png"
    image.unlink()
    BAD_IMAGES[name](image)
    database = ["--dataset", "kadid10k", "--root", str(root)]
    if command == "data --check":
        case = Case(["iqa", "data", *database, "--check", "--out", "t.csv"], [], [tmp_path / "t.csv"])
    elif command == "evaluate":
        case = Case(["iqa", "evaluate", *database, "--checkpoint", str(prior), "--json", "m.json"], [])
        case.absent = [tmp_path / "m.json"]
    else:
        case = Case(["iqa", "predict", str(image), "--checkpoint", str(prior), "--csv", "s.csv"], [])
        case.absent = [tmp_path / "s.csv"]
    case.names = [str(image)]
    check(case)


def _scores(image: Path, prior: Path) -> str:
    result = run("iqa", "predict", str(image), "--checkpoint", str(prior))
    assert result.exit_code == 0, result.output
    return result.output.split()[0]


def test_16_bit_image_scores_as_its_8_bit_equivalent(tmp_path: Path, prior: Path) -> None:
    rng = np.random.default_rng(3)
    grey8 = rng.integers(0, 256, (36, 40), dtype=np.uint8)
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 0..65535, exact
    Image.fromarray(grey8).convert("RGB").save(tmp_path / "flat.png")
    with Image.open(tmp_path / "deep.png") as deep:
        assert deep.mode.startswith("I")
    assert _scores(tmp_path / "deep.png", prior) == _scores(tmp_path / "flat.png", prior)


def test_palette_with_transparency_scores_as_composited_on_white(tmp_path: Path, prior: Path) -> None:
    rng = np.random.default_rng(4)
    indices = rng.integers(0, 4, (36, 40), dtype=np.uint8)
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (0, 0, 0)]  # index 3 is transparent
    img = Image.fromarray(indices, mode="P")
    img.putpalette([c for rgb in colours for c in rgb] + [0] * (256 - 4) * 3)
    img.save(tmp_path / "palette.png", transparency=3)
    shown = np.array([colours[i] if i != 3 else (255, 255, 255) for i in indices.ravel()], dtype=np.uint8)
    Image.fromarray(shown.reshape(36, 40, 3)).save(tmp_path / "shown.png")
    with Image.open(tmp_path / "palette.png") as saved:
        assert "transparency" in saved.info
    assert _scores(tmp_path / "palette.png", prior) == _scores(tmp_path / "shown.png", prior)


# ---------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(SMALL), SMALL, tmp_path_factory.mktemp("prior") / "prior.pt")


def _payload(prior: Path) -> dict:
    return torch.load(prior, weights_only=True)


def _edited(edit: Callable[[dict], object]) -> Callable[[Path, Path], object]:
    """Write the good prior's payload, changed by `edit` (which may return a replacement), to a path."""

    def write(good: Path, path: Path) -> None:
        payload = _payload(good)
        replaced = edit(payload)
        torch.save(payload if replaced is None else replaced, path)

    return write


def _nan_weight(payload: dict) -> None:
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))


def _wrong_shape(payload: dict) -> None:
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.zeros(3)


BAD_PRIORS: dict[str, Callable[[Path, Path], object]] = {
    "text file": lambda good, p: p.write_text("not a checkpoint\n"),
    "0 bytes": lambda good, p: p.write_bytes(b""),
    "truncated": lambda good, p: p.write_bytes(good.read_bytes()[:300]),
    "a tensor": lambda good, p: torch.save(torch.zeros(3), p),
    "a list": lambda good, p: torch.save([1, 2], p),
    "no format": _edited(lambda d: d.pop("format")),
    "no config": _edited(lambda d: d.pop("config")),
    "no state_dict": _edited(lambda d: d.pop("state_dict")),
    "config not a string": _edited(lambda d: d.update(config=7)),
    "config not JSON": _edited(lambda d: d.update(config="{backbone: small")),
    "config a JSON list": _edited(lambda d: d.update(config="[1, 2]")),
    "config unknown backbone": _edited(lambda d: d.update(config='{"backbone": "vgg"}')),
    "config bad width": _edited(lambda d: d.update(config='{"backbone": "small", "width": "wide"}')),
    "state_dict a list": _edited(lambda d: d.update(state_dict=[1, 2])),
    "state_dict holds a string": _edited(lambda d: d["state_dict"].update({"head.0.weight": "x"})),
    "state_dict wrong shape": _edited(_wrong_shape),
    "non-finite weight": _edited(_nan_weight),
    "a folder": lambda good, p: p.mkdir(),
}


@pytest.mark.parametrize("name", list(BAD_PRIORS))
@pytest.mark.parametrize("command", ["predict", "evaluate", "finetune"])
def test_bad_prior(command: str, name: str, tmp_path: Path, prior: Path) -> None:
    root = kadid(tmp_path)
    bad = tmp_path / "bad" / "prior.pt"
    bad.parent.mkdir()
    BAD_PRIORS[name](prior, bad)
    database = ["--dataset", "kadid10k", "--root", str(root)]
    args, written = {
        "predict": (["predict", str(root / "images"), "--csv", "s.csv"], tmp_path / "s.csv"),
        "evaluate": (["evaluate", *database, "--json", "m.json"], tmp_path / "m.json"),
        "finetune": (["finetune", *database, "--epochs", "1", "--out", "ft.pt"], tmp_path / "ft.pt"),
    }[command]
    check(Case(["iqa", *args, "--checkpoint", str(bad)], [str(bad)], [written]))


def test_prior_folder_without_a_prior(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    check(Case(["iqa", "predict", str(tmp_path), "--checkpoint", "empty"], [str(Path("empty") / "prior.pt")]))


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A database and a run folder as a run killed after its first checkpoint leaves them (no prior)."""
    tmp = tmp_path_factory.mktemp("killed")
    root = kadid(tmp)
    args = ["iqa", "train", "--dataset", "kadid10k", "--root", str(root), *SMALL_FAST, "--iterations", "1"]
    result = run(*args, "--out", str(tmp / "run"))
    assert result.exit_code == 0, result.output
    (tmp / "run" / "prior.pt").unlink()
    (tmp / "run" / "prior.json").unlink()
    return root, tmp / "run"


def _edit_state(edit: Callable[[dict], object]) -> Callable[[Path], object]:
    def write(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        replaced = edit(state)
        torch.save(state if replaced is None else replaced, path)

    return write


def _replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _nan_model(state: dict) -> None:
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] * float("inf")


BAD_CHECKPOINTS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "text file": ("checkpoint.pt", lambda p: p.write_text("not a checkpoint\n")),
    "0 bytes": ("checkpoint.pt", lambda p: p.write_bytes(b"")),
    "truncated": ("checkpoint.pt", lambda p: p.write_bytes(p.read_bytes()[:500])),
    "a list": ("checkpoint.pt", lambda p: torch.save([1, 2], p)),
    "no model": ("checkpoint.pt", _edit_state(lambda s: s.pop("model"))),
    "no iteration": ("checkpoint.pt", _edit_state(lambda s: s.pop("iteration"))),
    "no generator": ("checkpoint.pt", _edit_state(lambda s: s.pop("generator"))),
    "no optimizer": ("checkpoint.pt", _edit_state(lambda s: s.pop("optimizer"))),
    "iteration a string": ("checkpoint.pt", _edit_state(lambda s: s.update(iteration="three"))),
    "model a list": ("checkpoint.pt", _edit_state(lambda s: s.update(model=[1]))),
    "generator a string": ("checkpoint.pt", _edit_state(lambda s: s.update(generator="seed"))),
    "optimizer malformed": ("checkpoint.pt", _edit_state(lambda s: s.update(optimizer={"state": 3}))),
    "rng malformed": ("checkpoint.pt", _edit_state(lambda s: s.update(rng={"torch": torch.zeros(2)}))),
    "non-finite weight": ("checkpoint.pt", _edit_state(_nan_model)),
    "checkpoint a folder": ("checkpoint.pt", _replace_with_folder),
    "config not JSON": ("config.json", lambda p: p.write_text("{not json")),
    "config a list": ("config.json", lambda p: p.write_text("[1, 2]\n")),
    "config missing": ("config.json", Path.unlink),
    "config a folder": ("config.json", _replace_with_folder),
}


@pytest.mark.parametrize("name", list(BAD_CHECKPOINTS))
def test_resume_from_a_bad_checkpoint(name: str, tmp_path: Path, killed_run: tuple[Path, Path]) -> None:
    root, template = killed_run
    shutil.copytree(template, tmp_path / "run")
    file, damage = BAD_CHECKPOINTS[name]
    damage(tmp_path / "run" / "checkpoint" / file)
    case = train_case(tmp_path, root, str(Path("run") / "checkpoint" / file))
    case.args += ["--iterations", "2", "--resume"]
    check(case)


# ---------------------------------------------------------------------------------------------- paths


def _read_only(folder: Path) -> Path:
    folder.mkdir()
    folder.chmod(0o500)
    return folder


def _a_file(path: Path) -> Path:
    path.write_text("in the way\n")
    return path


def _path_case(name: str, tmp: Path, prior: Path) -> Case:
    root = kadid(tmp)
    train = ["iqa", "train", "--dataset", "kadid10k", "--root", str(root), *SMALL_FAST, "--iterations", "1"]
    evaluate = ["iqa", "evaluate", "--dataset", "kadid10k", "--root", str(root), "--checkpoint", str(prior)]
    predict = ["iqa", "predict", str(root / "images"), "--checkpoint", str(prior)]
    finetune = ["iqa", "finetune", "--checkpoint", str(prior), "--dataset", "kadid10k", "--root", str(root)]
    if name == "train out in a read-only folder":
        out = _read_only(tmp / "ro") / "run"
        return Case([*train, "--out", str(out)], [str(out)], [out])
    if name == "train out under a file":
        out = _a_file(tmp / "f") / "run"
        return Case([*train, "--out", str(out)], [str(out)])
    if name == "train out is a file":
        out = _a_file(tmp / "run")
        return Case([*train, "--out", str(out)], [str(out)])
    if name == "prior.pt is a folder":
        (tmp / "run" / "prior.pt").mkdir(parents=True)
        return Case([*train, "--out", str(tmp / "run"), "--overwrite"], [str(tmp / "run")])
    if name == "csv under a file":
        return Case([*predict, "--csv", str(_a_file(tmp / "f") / "s.csv")], [str(tmp / "f" / "s.csv")])
    if name == "csv in a read-only folder":
        out = _read_only(tmp / "ro") / "s.csv"
        return Case([*predict, "--csv", str(out)], [str(out)], [out])
    if name == "csv is a folder":
        (tmp / "s.csv").mkdir()
        return Case([*predict, "--csv", str(tmp / "s.csv")], [str(tmp / "s.csv")])
    if name == "saliency is a file":
        return Case([*predict, "--saliency", str(_a_file(tmp / "maps"))], [str(tmp / "maps")])
    if name == "json under a file":
        return Case([*evaluate, "--json", str(_a_file(tmp / "f") / "m.json")], [str(tmp / "f" / "m.json")])
    if name == "finetune out is a folder":
        (tmp / "ft.pt").mkdir()
        return Case([*finetune, "--epochs", "1", "--out", str(tmp / "ft.pt")], [str(tmp / "ft.pt")])
    if name == "finetune out in a read-only folder":
        out = _read_only(tmp / "ro") / "ft.pt"
        return Case([*finetune, "--epochs", "1", "--out", str(out)], [str(out)], [out])
    if name == "data out in a read-only folder":
        out = _read_only(tmp / "ro") / "t.csv"
        return Case(
            ["iqa", "data", "--dataset", "kadid10k", "--root", str(root), "--out", str(out)], [str(out)]
        )
    if name.startswith("device "):
        device = name.removeprefix("device ")
        return Case([*train, "--out", "run", "--device", device], ["--device", device], [tmp / "run"])
    raise AssertionError(name)


PATHS = [
    "train out in a read-only folder",
    "train out under a file",
    "train out is a file",
    "prior.pt is a folder",
    "csv under a file",
    "csv in a read-only folder",
    "csv is a folder",
    "saliency is a file",
    "json under a file",
    "finetune out is a folder",
    "finetune out in a read-only folder",
    "data out in a read-only folder",
    "device gpu0",
    "device cuda:x",
    pytest.param("device cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    pytest.param("device mps", marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="has MPS")),
]


@pytest.mark.parametrize("name", PATHS)
def test_bad_path(name: str, tmp_path: Path, prior: Path) -> None:
    if "read-only" in name and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    try:
        check(_path_case(name, tmp_path, prior))
    finally:
        for folder in tmp_path.glob("ro"):
            folder.chmod(0o700)


# ------------------------------------------------------------------------------------------- the check


def check(case: Case) -> None:
    """Exit 2, one line naming the file, no traceback, nothing written that claims success.

    Progress bars (tqdm, on stderr) that a failed command had started are not error lines.
    """
    result = run(*case.args)
    result.output_bytes = b"\n".join(
        line for line in result.output_bytes.replace(b"\r", b"\n").splitlines() if b"it/s]" not in line
    )
    assert_one_line_error(result, *case.names)
    assert "prior written" not in result.output
    for path in case.absent:
        assert not path.exists(), f"{path} was written by a failed command"
