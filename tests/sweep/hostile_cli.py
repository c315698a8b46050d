"""A hostile sweep over every `metalearn iqa` and `metalearn fewshot` command: every numeric option given
nan, inf, -inf, a negative number, a word, a fraction where a count is due and 0 where 0 means nothing;
absurd sizes (10^9); a bogus choice; missing, unreadable and corrupt files; duplicated list values;
unwritable outputs.

    python -m tests.sweep.hostile_cli          # prints each unhandled case, then `tried N, handled M`

A case is handled when the command exits 2 with one `Error: ...` line (progress bars aside) that names the
option or file given, no traceback, and writes no file (a run folder's lock aside). Options are enumerated
from the commands themselves, so a new option is swept too. `tests/core/test_hostile_sweep.py` runs it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from click.testing import CliRunner, Result
from PIL import Image

from metalearn.cli import main

NUMBERS = (click.types.IntParamType, click.types.FloatParamType)
# fmt: off
ZERO_MEANS_SOMETHING = {"--workers", "--finetune-epochs", "--queue", "--image-cache-gb", "--momentum", "--seed",
                        "--inner-steps", "--test-inner-steps", "--epochs@finetune", "--max-side"}
"""Options where 0 is a meaningful value (no workers, no fine-tuning, native size ...): not swept with 0."""
ABSURD_SIZES = {"--batch-size", "--train-crop", "--crop", "--patch", "--region", "--width",
                "--images-per-batch", "--chains-per-image", "--ways", "--shots", "--query", "--train-ways",
                "--train-shots", "--train-query", "--image-size", "--hidden"}
"""Sizes that no machine or database can honour at 10^9 (pixels, images in a batch, classes, filters)."""
# fmt: on
HUGE = "1000000000"


@dataclass
class Case:
    """`metalearn ARGS` and what its one error line must name (an option or a file)."""

    name: str
    args: list[str]
    names: str

    def named_in(self, line: str) -> bool:
        """The option as given (`--train-query`), or in the library's words (`train query`, `query`,
        `queries`: a check below the CLI names the setting, not the flag)."""
        if self.names in line or not self.names.startswith("--"):
            return self.names in line
        words = self.names[2:].split("-")
        last = words[-1]
        forms = {" ".join(words), "_".join(words), last, last + "s", last[:-1] + "ies"}
        return any(form in line for form in forms)


@dataclass
class Outcome:
    handled: bool
    why: str


class Fixture:
    """The files the base command lines use, built once in `tmp`."""

    def __init__(self, tmp: Path) -> None:
        import torch

        from metalearn_iqa.model.network import ModelConfig
        from metalearn_iqa.model.weights import build_model, save_model
        from tests.conftest import write_kadid_like

        self.tmp = tmp
        self.db = write_kadid_like(tmp / "db", refs=2, types=(1, 9), levels=(1,))
        small = ModelConfig(backbone="small", width=4, pretrained="none")
        torch.manual_seed(0)
        self.prior = save_model(build_model(small), small, tmp / "prior" / "prior.pt")
        self.image = next((self.db / "images").glob("*.png"))
        self.file = tmp / "a_file"
        self.file.write_text("not a folder")
        self.corrupt = tmp / "corrupt.pt"
        self.corrupt.write_bytes(self.prior.read_bytes()[:300])
        self.empty = tmp / "empty"
        self.empty.mkdir()
        # root may write into a read-only folder: a folder below a file cannot be made by anyone
        self.unwritable = self.file / "sub"
        self.pictures = tmp / "pictures"  # big enough for QPT's patches
        self.pictures.mkdir()
        for seed in range(3):
            noise = np.random.default_rng(seed).integers(0, 256, (96, 80, 3), dtype=np.uint8)
            Image.fromarray(noise).save(self.pictures / f"p{seed}.png")
        self.glyphs = tmp / "glyphs"
        self.run = tmp / "fewshot-run"

    def train_fewshot_run(self) -> None:
        """The run `fewshot evaluate` reads."""
        result = invoke(
            ["fewshot", "train", *_replace(self.base("fewshot", "train"), "--out", str(self.run))]
        )
        assert result.exit_code == 0, result.output

    def base(self, group: str, command: str) -> list[str]:
        """A command line that runs (fast) as it is; each case changes one thing in it."""
        db, prior, out = str(self.db), str(self.prior), self.tmp / "out"
        # fmt: off
        small = ["--backbone", "small", "--width", "4", "--train-crop", "32", "--batch-size", "2",
                 "--inner-steps", "1", "--tasks-per-batch", "1", "--device", "cpu", "--iterations", "1"]
        kadid = ["--dataset", "kadid10k", "--root", db]
        return {
            ("iqa", "train"): [*kadid, *small, "--out", str(out / "train")],
            ("iqa", "finetune"): ["--checkpoint", prior, *kadid, "--epochs", "1", "--train-crop", "32",
                                  "--batch-size", "2", "--out", str(out / "tuned.pt")],
            ("iqa", "evaluate"): ["--checkpoint", prior, *kadid, "--json", str(out / "eval.json")],
            ("iqa", "predict"): ["--checkpoint", prior, "--csv", str(out / "scores.csv"), str(self.image)],
            ("iqa", "lodo"): [*kadid, *small, "--finetune-epochs", "0", "--out", str(out / "lodo")],
            ("iqa", "cross"): ["--prior-dataset", "kadid10k", "--prior-root", db, "--target", "kadid10k",
                               "--target-root", db, *small, "--repeats", "1", "--finetune-epochs", "0",
                               "--out", str(out / "cross")],
            # the demo builds a 6000-image database: an image cache below a file stops it before that
            ("iqa", "demo"): ["--image-cache", str(self.file / "cache"), "--out", str(out / "demo")],
            ("iqa", "pretrain"): ["--images", str(self.pictures), "--backbone", "small", "--width", "4",
                                  "--iterations", "1", "--images-per-batch", "2", "--patch", "32",
                                  "--region", "64", "--device", "cpu", "--out", str(out / "qpt")],
            ("iqa", "data"): [*kadid, "--out", str(out / "table.csv")],
            ("fewshot", "data"): ["--dataset", "glyphs", "--root", str(self.glyphs)],
            ("fewshot", "train"): ["--dataset", "glyphs", "--root", str(self.glyphs), "--algorithm", "protonet",
                                   "--iterations", "1", "--ways", "2", "--query", "1", "--tasks-per-batch", "1",
                                   "--hidden", "4", "--device", "cpu", "--no-progress", "--out", str(out / "fs")],
            ("fewshot", "evaluate"): ["--run", str(self.run), "--episodes", "2", "--device", "cpu",
                                      "--json", str(out / "fs.json")],
            ("fewshot", "demo"): ["--iterations", "1", "--episodes", "2", "--json", str(out / "demo.json")],
        }[(group, command)]
        # fmt: on

    def written(self) -> list[Path]:
        """Files a command wrote (a run folder's lock aside): a refused command writes none."""
        return [p for p in (self.tmp / "out").rglob("*") if p.is_file() and p.name != ".lock"]


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=True)


def commands() -> Iterator[tuple[str, str, click.Command]]:
    ctx = click.Context(main)
    for group_name in ("iqa", "fewshot"):
        group = main.get_command(ctx, group_name)
        assert isinstance(group, click.Group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            yield group_name, name, command


def _replace(base: list[str], option: str, value: str) -> list[str]:
    """`base` with `option VALUE` (replacing the option's value if `base` gives it)."""
    args = list(base)
    if option in args:
        args[args.index(option) + 1] = value
        return args
    return [option, value, *args]


def _number_cases(fx: Fixture, group: str, name: str, command: click.Command) -> Iterator[Case]:
    base = fx.base(group, name)
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or not isinstance(param.type, NUMBERS):
            continue
        option = param.opts[0]
        if isinstance(param.type, click.types.FloatParamType):
            values = ["nan", "inf", "-inf", "-1", "abc"]
        else:
            values = ["-1", "abc", "1.5", "nan"]
        if option not in ZERO_MEANS_SOMETHING and f"{option}@{name}" not in ZERO_MEANS_SOMETHING:
            values.append("0")
        if option in ABSURD_SIZES:
            values.append(HUGE)
        for value in values:
            yield Case(
                f"{group} {name} {option} {value}", [group, name, *_replace(base, option, value)], option
            )


def _choice_cases(fx: Fixture, group: str, name: str, command: click.Command) -> Iterator[Case]:
    base = fx.base(group, name)
    for param in command.params:
        if isinstance(param, click.Option) and isinstance(param.type, click.Choice):
            option = param.opts[0]
            yield Case(
                f"{group} {name} {option} bogus", [group, name, *_replace(base, option, "bogus")], option
            )


def _file_cases(fx: Fixture) -> Iterator[Case]:
    t, missing, bad, corrupt = fx.tmp, str(fx.tmp / "missing"), str(fx.unwritable), str(fx.corrupt)
    # fmt: off
    edits = [  # (group, command, option, value, what the error line names)
        ("iqa", "train", "--root", missing, missing), ("iqa", "train", "--root", str(fx.file), str(fx.file)),
        ("iqa", "train", "--out", str(fx.file), "--out"), ("iqa", "train", "--out", bad, "--out"),
        ("iqa", "train", "--init", missing, missing), ("iqa", "train", "--init", corrupt, "corrupt.pt"),
        ("iqa", "train", "--weights", missing, "--weights"), ("iqa", "train", "--dataset", "nope", "nope"),
        ("iqa", "train", "--exclude-types", "9,9", "--exclude-types"),
        ("iqa", "train", "--exclude-types", "1,9", "0 training images"),
        ("iqa", "train", "--image-cache", bad, "--image-cache"),
        ("iqa", "train", "--device", "cuda:7", "--device"), ("iqa", "train", "--device", "tpu", "--device"),
        ("iqa", "finetune", "--checkpoint", missing, missing), ("iqa", "finetune", "--checkpoint", corrupt, "corrupt.pt"),
        ("iqa", "finetune", "--checkpoint", str(fx.empty), "empty"), ("iqa", "finetune", "--out", str(t), "--out"),
        ("iqa", "finetune", "--out", bad + "/m.pt", "--out"), ("iqa", "finetune", "--batch-size", "5", "batch size 5"),
        ("iqa", "evaluate", "--checkpoint", missing, missing), ("iqa", "evaluate", "--checkpoint", corrupt, "corrupt.pt"),
        ("iqa", "evaluate", "--json", str(t), "--json"), ("iqa", "evaluate", "--json", bad + "/e.json", "--json"),
        ("iqa", "evaluate", "--root", missing, missing), ("iqa", "evaluate", "--dataset", "nope", "nope"),
        ("iqa", "predict", "--checkpoint", corrupt, "corrupt.pt"), ("iqa", "predict", "--csv", bad + "/s.csv", "--csv"),
        ("iqa", "predict", "--saliency", str(fx.file), "--saliency"), ("iqa", "predict", "--saliency", bad, "--saliency"),
        ("iqa", "lodo", "--types", "1,1", "--types"), ("iqa", "lodo", "--types", "1,x", "--types"),
        ("iqa", "lodo", "--types", "7", "7"), ("iqa", "lodo", "--out", str(fx.file), "--out"),
        ("iqa", "lodo", "--batch-size", "9", "batch size 9"),
        ("iqa", "cross", "--target-root", missing, missing), ("iqa", "cross", "--prior", corrupt, "corrupt.pt"),
        ("iqa", "cross", "--out", str(fx.file), "--out"),
        ("iqa", "demo", "--seeds", "0,0", "--seeds"), ("iqa", "demo", "--seeds", "-1", "--seeds"),
        ("iqa", "demo", "--seeds", ",", "--seeds"), ("iqa", "demo", "--out", str(fx.file), "--out"),
        ("iqa", "pretrain", "--images", missing, missing), ("iqa", "pretrain", "--images", str(fx.empty), "empty"),
        ("iqa", "pretrain", "--out", str(fx.file), "--out"), ("iqa", "pretrain", "--exclude-types", "3,3", "--exclude-types"),
        ("iqa", "pretrain", "--weights", missing, "--weights"), ("iqa", "pretrain", "--device", "cuda:7", "--device"),
        ("iqa", "data", "--out", str(t), "--out"), ("iqa", "data", "--root", missing, missing),
        ("fewshot", "data", "--root", str(fx.file), "--root"), ("fewshot", "data", "--dataset", "omniglot", "images_background"),
        ("fewshot", "train", "--root", str(fx.file), "--root"), ("fewshot", "train", "--out", str(fx.file), "--out"),
        ("fewshot", "train", "--out", bad, "--out"), ("fewshot", "train", "--algorithm", "nope", "nope"),
        ("fewshot", "train", "--device", "cuda:7", "--device"), ("fewshot", "train", "--rotations", "3", "--rotations"),
        ("fewshot", "evaluate", "--run", missing, "--run"), ("fewshot", "evaluate", "--run", str(fx.empty), "empty"),
        ("fewshot", "evaluate", "--run", str(t / "db"), "db"), ("fewshot", "evaluate", "--split", "nope", "nope"),
        ("fewshot", "evaluate", "--json", str(t), "--json"), ("fewshot", "evaluate", "--json", bad + "/r.json", "--json"),
        ("fewshot", "demo", "--json", str(t), "--json"), ("fewshot", "demo", "--json", bad + "/d.json", "--json"),
    ]
    # fmt: on
    for group, name, option, value, fragment in edits:
        args = [group, name, *_replace(fx.base(group, name), option, value)]
        yield Case(f"{group} {name} {option} {value.replace(str(t), '')}", args, fragment)
    twice = ["iqa", "train", "--dataset", "kadid10k", "--root", str(fx.db), *fx.base("iqa", "train")]
    yield Case("iqa train --dataset given twice", twice, "--dataset")
    cross = [
        "iqa",
        "cross",
        "--prior-dataset",
        "kadid10k",
        "--prior-root",
        str(fx.db),
        *fx.base("iqa", "cross"),
    ]
    yield Case("iqa cross --prior-dataset given twice", cross, "--prior-dataset")
    yield Case(
        "iqa predict missing image", ["iqa", "predict", "--checkpoint", str(fx.prior), missing], missing
    )
    corrupt_image = ["iqa", "predict", "--checkpoint", str(fx.prior), corrupt]
    yield Case("iqa predict corrupt image", corrupt_image, "corrupt.pt")


def cases(fx: Fixture) -> Iterator[Case]:
    for group, name, command in commands():
        yield from _number_cases(fx, group, name, command)
        yield from _choice_cases(fx, group, name, command)
    yield from _file_cases(fx)


def check(case: Case, fx: Fixture) -> Outcome:
    result = invoke(case.args)
    text = result.output.replace("\r", "\n")
    noise = ("it/s", "img/s", "note: ")  # progress bars and notes are not error lines
    lines = [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]
    written = [str(p) for p in fx.written()]
    shutil.rmtree(fx.tmp / "out", ignore_errors=True)  # the next case starts clean
    if result.exit_code != 2:
        return Outcome(False, f"exit {result.exit_code}: {lines[-1:] or result.exception!r}")
    if "Traceback" in text or len(lines) != 1 or not lines[0].startswith("Error: "):
        return Outcome(False, f"not one error line: {lines[:3]}")
    if not case.named_in(lines[0]):
        return Outcome(False, f"does not name {case.names!r}: {lines[0]}")
    if written:
        return Outcome(False, f"wrote {written}")
    return Outcome(True, lines[0])


def sweep(tmp: Path, verbose: bool = True) -> tuple[int, int]:
    """Run every case; print the unhandled ones; return (tried, handled)."""
    fx = Fixture(tmp)
    fx.train_fewshot_run()
    tried = handled = 0
    for case in cases(fx):
        outcome = check(case, fx)
        tried += 1
        handled += outcome.handled
        if verbose and not outcome.handled:
            print(f"UNHANDLED {case.name}: {outcome.why}", flush=True)
    return tried, handled


if __name__ == "__main__":
    os.environ.setdefault("METALEARN_OUTPUT", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as folder:
        tried, handled = sweep(Path(folder))
    print(f"tried {tried}, handled {handled}")
    sys.exit(0 if tried == handled else 1)
