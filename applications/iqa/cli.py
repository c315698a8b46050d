"""`metalearn iqa ...`: train, fine-tune, evaluate and apply NR-IQA quality priors from the command line."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import signal
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metalearn import DivergedError, Interrupted
from metalearn.runs import RunExistsError, RunFolderError, lock_run_dir
from metalearn_iqa.data.records import DatasetError, IQARecord, write_table
from metalearn_iqa.launch import local_main_first, on_main, torchrun_command
from metalearn_iqa.model import ModelConfig, WeightsError, save_model

if TYPE_CHECKING:
    from metalearn_iqa.inference import EvalConfig, FinetuneConfig
    from metalearn_iqa.prior import PriorConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class CLIError(click.ClickException):
    """A one-line error with exit code 2 (bad input), never a traceback."""

    exit_code = 2


class InterruptedBySIGINT(CLIError):
    """Training stopped by SIGINT: exit 130, as the shell reports the signal."""

    exit_code = 128 + signal.SIGINT


class InterruptedBySIGTERM(CLIError):
    """Training stopped by SIGTERM: exit 143."""

    exit_code = 128 + signal.SIGTERM


SIGNAL_ERRORS: dict[int, type[CLIError]] = {
    signal.SIGINT: InterruptedBySIGINT,
    signal.SIGTERM: InterruptedBySIGTERM,
}


INPUT_ERRORS = (
    DatasetError,
    WeightsError,
    DivergedError,
    FileNotFoundError,
    ValueError,
    ImportError,
    RunFolderError,
)
"""Bad input, a run folder that cannot be used as asked, or a diverged run: reported in one line."""


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors, and a diverged training run, into one-line CLI errors (exit 2);
    an interrupted run into one line saying where its checkpoint is (exit 128 + the signal's number)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RunExistsError as exc:
            raise CLIError(_run_exists_message(exc)) from None
        except Interrupted as exc:  # exit 130 (SIGINT) or 143 (SIGTERM), as the shell reports a signal
            message = f"{exc}; pass --resume to continue" if exc.checkpoint else str(exc)
            raise SIGNAL_ERRORS.get(exc.signum, CLIError)(message) from None
        except INPUT_ERRORS as exc:
            raise CLIError(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from None
        except OSError as exc:  # a folder that vanished or went read-only mid-run, a full disk ...
            # a rename's target (filename2), not the temporary file the atomic write renames from
            raise CLIError(f"{exc.filename2 or exc.filename or 'output'}: {exc.strerror or exc}") from None

    return wrapper


def _run_exists_message(exc: RunExistsError) -> str:
    """The core's refusal in the CLI's terms: which flag continues the old run, which replaces it."""
    if exc.foreign:
        return str(exc).splitlines()[0]
    return (
        f"{exc.path}: holds a previous run ({', '.join(exc.entries)}); pass --resume to continue it or "
        "--overwrite to replace it"
    )


def _run_mode(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise CLIError("use either --resume (continue the run) or --overwrite (replace it), not both")


def _writable_folder(path: Path, option: str) -> Path:
    """Create `path` if needed and check a file can be written in it, before any work starts."""
    try:
        _probe_folder(path)
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot write a folder there ({_reason(exc, path)})") from None
    return path


def _writable_file(path: Path, option: str) -> Path:
    """Check the folder of an output file is writable (creating it) and that `path` is not a folder."""
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a folder, expected a file name")
    try:
        _probe_folder(path.parent)
    except OSError as exc:
        raise CLIError(
            f"{option} {path}: cannot write the file there ({_reason(exc, path.parent)})"
        ) from None
    return path


def _write_output(path: Path, text: str) -> None:
    """Write a result file after the work: atomically, re-creating its folder should it have gone since
    `_writable_file` checked it, so a finished computation is not lost to a missing folder."""
    from metalearn.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def _probe_folder(path: Path) -> None:
    on_main(_probe_here, path)  # under torchrun: rank 0's disk holds the outputs


def _probe_here(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
        pass


def _reason(exc: OSError, folder: Path) -> str:
    """Why a folder cannot be written, in words (a file where a folder should be is the common case)."""
    if isinstance(exc, FileExistsError | NotADirectoryError) or (folder.exists() and not folder.is_dir()):
        return "a file is in the way"
    return exc.strerror or exc.__class__.__name__


def _check_device(device: str) -> None:
    """Refuse a device this machine cannot run on before any data is loaded."""
    from metalearn.trainer import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None


def _load(name: str, root: str | None) -> list[IQARecord]:
    from metalearn_iqa.data.registry import load_dataset

    if root is None and name.lower() != "synthetic":
        raise CLIError(f"--root is required for dataset {name!r}")
    with local_main_first():  # under torchrun: one rank per machine generates the synthetic database
        records = load_dataset(name, root)  # type: ignore[arg-type]
    if not records:
        raise CLIError(f"{root}: dataset {name!r} has no images")
    return records


def _load_many(names: tuple[str, ...], roots: tuple[str, ...]) -> list[IQARecord]:
    """Several databases pooled (scores are on [0, 1] already); each database's types stay distinct tasks.

    Roots pair up, in order, with the datasets that need one (every dataset but synthetic).
    """
    needing = [n for n in names if n.lower() != "synthetic"]
    if len(roots) != len(needing):
        raise CLIError(
            f"give one --root per dataset other than synthetic: {len(needing)} expected, {len(roots)} given"
        )
    root_of = iter(roots)
    records: list[IQARecord] = []
    for i, name in enumerate(names):
        part = _load(name, None if name.lower() == "synthetic" else next(root_of))
        if len(names) > 1:
            part = [_offset_type(r, 100 * i) for r in part]
        records.extend(part)
    return records


def _offset_type(record: IQARecord, offset: int) -> IQARecord:
    from dataclasses import replace

    return replace(record, distortion=None if record.distortion is None else record.distortion + offset)


def _parse_types(text: str | None, option: str = "--types") -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise CLIError(f"{option} expects comma-separated integers, got {text!r}") from None


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Backbone, its initialisation and the head."""
    from metalearn_iqa.model import BACKBONES, NORMS

    options = [
        click.option(
            "--backbone",
            type=click.Choice(BACKBONES),
            default="resnet18",
            show_default=True,
            help="resnet18: the paper's (ImageNet init by default); small: a compact CNN (under 1 M "
            "parameters) trained from scratch, for CPU runs.",
        ),
        click.option(
            "--width",
            type=click.IntRange(4),
            default=None,
            help="Small backbone only: channels of its first stage (stages: 1x, 2x, 3x, 4x) [32].",
        ),
        click.option(
            "--norm",
            type=click.Choice(NORMS),
            default=None,
            help="Small backbone only: its normalisation layers [none: one-type task batches defeat batch and group norm].",
        ),
        click.option(
            "--head",
            type=click.Choice(["paper", "authors"]),
            default="paper",
            show_default=True,
            help="paper: GAP->FC->FC(1); authors: their code's 1000->1024->512->1 head (resnet18 only).",
        ),
        click.option(
            "--pretrained/--no-pretrained",
            default=None,
            help="Start the resnet18 backbone from torchvision's ImageNet weights (torch hub cache, else "
            "download), as the paper does [default for resnet18], or from scratch (--no-pretrained: quick "
            "or offline runs) [default for small].",
        ),
        click.option(
            "--weights",
            type=click.Path(),
            default=None,
            help="A resnet18 state_dict file to start the backbone from.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


ALGORITHM_HELP = (
    "metaiqa: the paper's bi-level optimisation; maml, fomaml, reptile: other meta-learners; baseline: the "
    "fair ablation, plain training with one Adam step per batch at the same passes; pooled-baseline: the "
    "old variant, one step per meta-batch on its tasks' images pooled; l2l-maml, l2l-metasgd: learn2learn's "
    "(the l2l extra). Every name of `metalearn algorithms` is accepted."
)


def prior_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Meta-training hyper-parameters shared by train, lodo and cross."""
    from metalearn.algorithms import ALGORITHMS

    options = [
        click.option(
            "--algorithm",
            type=click.Choice(list(ALGORITHMS)),
            default="metaiqa",
            show_default=True,
            help=ALGORITHM_HELP,
        ),
        click.option(
            "--epochs",
            type=click.FloatRange(0, min_open=True),
            default=100.0,
            show_default=True,
            help="Training budget: one epoch is ceil(images / batch size) forward+backward passes of one "
            "batch, for every algorithm, so equal epochs are equal compute (lr x0.8 every 5 epochs).",
        ),
        click.option(
            "--iterations",
            type=click.IntRange(1),
            default=None,
            help="Override --epochs with this many outer iterations.",
        ),
        click.option("--tasks-per-batch", type=click.IntRange(1), default=5, show_default=True),
        click.option("--inner-steps", type=click.IntRange(1), default=6, show_default=True),
        click.option("--inner-lr", type=float, default=1e-4, show_default=True),
        click.option("--outer-lr", type=float, default=1e-4, show_default=True),
        click.option(
            "--outer-optimizer",
            type=click.Choice(["adam", "sgd"]),
            default="adam",
            show_default=True,
            help="Outer update: Adam, or plain gradient descent on the mean task signal (the paper's Eq. 8).",
        ),
        click.option(
            "--freeze-batchnorm/--train-batchnorm",
            default=False,
            show_default=True,
            help="Run BatchNorm layers in eval mode while training (one-type task batches hide how types compare).",
        ),
        click.option(
            "--train-crop",
            type=click.IntRange(32),
            default=224,
            show_default=True,
            help="Random training crop.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1),
            default=8,
            show_default=True,
            help="Images per batch (meta-training, and fine-tuning where there is any).",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ..."),
    ]
    for option in reversed(options):
        func = option(func)
    return model_options(func)


WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="DataLoader worker processes that decode and build batches ahead (same results for any N).",
)


def loader_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How training batches are built (train, lodo, cross, demo): worker processes and the image cache."""
    options = [
        WORKERS_OPTION,
        click.option(
            "--image-cache",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder of decoded images (memory-mapped, shared by workers, reused by later runs) "
            "[with --workers: ~/.cache/metalearn/images; without: in RAM, at most 2 GiB].",
        ),
        click.option(
            "--image-cache-gb",
            type=click.FloatRange(0),
            default=32.0,
            show_default=True,
            help="Bound on the image cache folder; images past it are decoded from their files each time.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _image_store(kw: dict[str, Any]):  # noqa: ANN202
    """The ImageStore the loader options describe (removed from `kw`)."""
    from metalearn_iqa.images import ImageStore
    from metalearn_iqa.paths import default_cache_dir

    workers, folder, gb = kw.pop("workers"), kw.pop("image_cache"), kw.pop("image_cache_gb")
    if folder is None and workers:
        folder = default_cache_dir()
    if folder is None:
        return ImageStore(workers=workers)
    _writable_folder(Path(folder), "--image-cache")
    return ImageStore(max_bytes=int(gb * 1024**3), cache_dir=folder, workers=workers)


def _init(backbone: str, pretrained: bool | None, weights: str | None) -> str:
    """The backbone init: ImageNet for resnet18 and scratch for small, unless --weights/--no-pretrained say."""
    if weights and pretrained is not None:
        flag = "--pretrained" if pretrained else "--no-pretrained"
        raise CLIError(f"use either {flag} or --weights, not both")
    if backbone == "small" and (weights or pretrained):
        flag = "--weights" if weights else "--pretrained"
        raise CLIError(f"{flag} needs --backbone resnet18: the small backbone has no pretrained weights")
    if weights:
        return weights
    return "imagenet" if pretrained or (pretrained is None and backbone == "resnet18") else "none"


def _model_config(kw: dict[str, Any]) -> ModelConfig:
    """The network the model options describe."""
    backbone = kw["backbone"]
    if backbone == "small" and kw["head"] != "paper":
        raise CLIError("--head authors needs --backbone resnet18 (it reads ImageNet logits)")
    if backbone == "resnet18" and (kw["width"] is not None or kw["norm"] is not None):
        raise CLIError("--width and --norm shape the small backbone: add --backbone small")
    small = {k: kw[k] for k in ("width", "norm") if kw[k] is not None}
    return ModelConfig(
        backbone=backbone,
        head=kw["head"],
        pretrained=_init(backbone, kw["pretrained"], kw["weights"]),
        **small,
    )


def _prior_config(kw: dict[str, Any]) -> PriorConfig:
    from metalearn_iqa.prior import PriorConfig
    from metalearn_iqa.tasks import TaskConfig

    _check_device(kw["device"])
    init = _checked_init(kw)
    return PriorConfig(
        algorithm=kw["algorithm"],
        epochs=kw["epochs"],
        iterations=kw["iterations"] or 0,
        tasks_per_batch=kw["tasks_per_batch"],
        inner_steps=kw["inner_steps"],
        inner_lr=kw["inner_lr"],
        outer_lr=kw["outer_lr"],
        outer_optimizer=kw["outer_optimizer"],
        freeze_batchnorm=kw["freeze_batchnorm"],
        seed=kw["seed"],
        device=kw["device"],
        task=TaskConfig(crop=kw["train_crop"], batch_size=kw["batch_size"], batches=kw["inner_steps"]),
        model=_model_config(kw),
        init=init,
    )


def view_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How test images are scored (evaluate, predict, lodo, cross): whole by default, crops on request."""
    options = [
        click.option(
            "--crop",
            type=click.IntRange(32),
            default=None,
            help="Score N x N crops instead of the whole image [whole image].",
        ),
        click.option(
            "--crops",
            type=click.Choice(["1", "5"]),
            default="1",
            show_default=True,
            help="With --crop: the centre crop, or the mean over the four corner and centre crops.",
        ),
        click.option(
            "--max-side",
            type=click.IntRange(0),
            default=None,
            help="First downscale (anti-aliased) images whose longest side exceeds N; 0: native size "
            "[databases: their display size (koniq10k 512, cid2013 800, others native); predict: 1024].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def finetune_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Fine-tuning inside the protocols (lodo, cross)."""
    options = [
        click.option(
            "--finetune-epochs",
            type=click.IntRange(0),
            default=10,
            show_default=True,
            help="Epochs of Adam on the target's training part (lr x0.8 every 5 epochs); 0: no fine-tuning.",
        ),
        click.option("--finetune-lr", type=float, default=1e-4, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _eval_config(crop: int | None, crops: str, max_side: int | None, default_side: int | None) -> EvalConfig:
    """The test view the options ask for; `--max-side` unset means `default_side`, 0 means native size."""
    from metalearn_iqa.inference import EvalConfig

    side = default_side if max_side is None else (max_side or None)
    return EvalConfig(crop=crop, crops=int(crops), max_side=side)


def _finetune_config(epochs: int, lr: float, prior: PriorConfig) -> FinetuneConfig:
    """Protocol fine-tuning with the prior run's training crop, batch size and seed."""
    from metalearn_iqa.inference import FinetuneConfig

    return FinetuneConfig(
        epochs=epochs, lr=lr, crop=prior.task.crop, batch_size=prior.task.batch_size, seed=prior.seed
    )


def _resolve_checkpoint(checkpoint: str | None) -> Path:
    from metalearn_iqa.paths import default_output_dir, newest_prior

    if checkpoint:
        return Path(checkpoint)
    found = newest_prior()
    if found is None:
        raise CLIError(
            f"no prior found under {default_output_dir()}/: run `metalearn iqa demo` or `metalearn iqa train` "
            "first, or pass --checkpoint PATH"
        )
    return found


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Delete the run folder's previous run first (else it is refused)."
)
dataset_option = click.option(
    "--dataset", required=True, help="tid2013, kadid10k, koniq10k, livec, cid2013, synthetic"
)
root_option = click.option(
    "--root", type=click.Path(), default=None, help="The database folder as published."
)
init_option = click.option(
    "--init",
    type=click.Path(dir_okay=False),
    default=None,
    help="Start the backbone from a QPT backbone file (`metalearn iqa pretrain --method qpt`); the "
    "quality head starts fresh. Excludes --pretrained/--weights.",
)


def _checked_init(kw: dict[str, Any]) -> str:
    """The --init file ("" without one), checked against the network the options describe before any
    work; with it the backbone starts from the file, so no ImageNet weights are fetched."""
    path = kw.get("init")
    if not path:
        return ""
    if kw.get("pretrained") is not None or kw.get("weights"):
        flag = "--weights" if kw.get("weights") else "--pretrained/--no-pretrained"
        raise CLIError(f"use either --init or {flag}, not both")
    from metalearn_iqa.qpt.backbone import check_compatible, read_backbone

    kw["pretrained"] = False
    check_compatible(read_backbone(path)[1], _model_config(kw), path)
    return str(path)


@click.group()
def iqa() -> None:
    """No-reference image quality assessment with meta-learned quality priors (MetaIQA)."""


@iqa.command()
@dataset_option
@root_option
@click.option("--out", type=click.Path(), default=None, help="CSV file to write.")
@click.option(
    "--check",
    is_flag=True,
    help="Also decode every image, as training would, and fail naming the first that cannot be read.",
)
@friendly_errors
def data(dataset: str, root: str | None, out: str | None, check: bool) -> None:
    """Write the table a loader sees (path, score in [0,1], raw score, type, level, reference, set)."""
    if out is None and not check:
        raise CLIError("give --out FILE to write the table, --check to decode every image, or both")
    if out is not None:
        _writable_file(Path(out), "--out")
    records = _load(dataset, root)
    if check:
        _check_images(records)
        click.echo(f"{len(records)} images from {dataset} decoded")
    if out is not None:
        write_table(records, out)
        click.echo(f"{len(records)} images from {dataset} -> {out}")


def _check_images(records: list[IQARecord]) -> None:
    """Decode every image with the rule training uses; one line naming the first bad one (and how many)."""
    from metalearn_iqa.images import read_image

    bad = []
    for record in records:
        try:
            read_image(record.path)
        except DatasetError as exc:
            bad.append(str(exc).splitlines()[0])
    if bad:
        more = f" (and {len(bad) - 1} more unreadable images)" if len(bad) > 1 else ""
        raise CLIError(f"{bad[0]}{more}")


@iqa.command()
@click.option("--dataset", "datasets", multiple=True, required=True, help="Repeat to pool databases.")
@click.option(
    "--root", "roots", multiple=True, type=click.Path(), help="One per --dataset (none for synthetic)."
)
@click.option("--exclude-types", default=None, help="Comma-separated distortion types to leave out.")
@prior_options
@init_option
@click.option("--out", type=click.Path(), default=None, help="Run folder [outputs/prior-ALGO].")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the run folder's last checkpoint (same settings; the budget may only grow).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=25,
    show_default=True,
    help="Save a resumable checkpoint every N iterations (also at the end and on SIGINT/SIGTERM).",
)
@loader_options
@overwrite_option
@torchrun_command
@friendly_errors
def train(
    datasets: tuple[str, ...],
    roots: tuple[str, ...],
    exclude_types: str | None,
    out: str | None,
    resume: bool,
    checkpoint_every: int,
    overwrite: bool,
    **kw: Any,
) -> None:
    """Meta-train a quality prior on distortion-specific tasks (or the plain-training baseline); print the passes."""
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.prior import PRIOR_FILE, SUMMARY_FILE, train_prior

    _run_mode(resume, overwrite)
    config = _prior_config(kw)
    out_dir = _writable_folder(
        Path(out) if out else default_output_dir() / f"prior-{config.algorithm}", "--out"
    )
    excluded = set(_parse_types(exclude_types, "--exclude-types"))
    records = [r for r in _load_many(datasets, roots) if r.distortion not in excluded]
    train_prior(
        config,
        records,
        out_dir,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=checkpoint_every,
        store=_image_store(kw),
    )
    summary = on_main(lambda: json.loads((out_dir / SUMMARY_FILE).read_text()))  # rank 0 wrote it
    click.echo(
        f"{summary['iterations']} iterations, {summary['passes']} forward+backward passes of {config.task.batch_size} "
        f"crops ({summary['passes'] / config.passes_per_epoch(len(records)):.2f} epochs of {len(records)} images)"
    )
    click.echo(f"prior written to {out_dir / PRIOR_FILE}")


@iqa.command()
@click.option("--checkpoint", type=click.Path(), default=None, help="A prior.pt (or its folder).")
@init_option
@dataset_option
@root_option
@click.option(
    "--epochs",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Passes over the database's images (lr x0.8 every 5 epochs).",
)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option(
    "--train-crop", type=click.IntRange(32), default=224, show_default=True, help="Random training crop."
)
@click.option("--batch-size", type=click.IntRange(2), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), required=True, help="Where to save the fine-tuned model.")
@friendly_errors
def finetune(
    checkpoint: str | None,
    init: str | None,
    dataset: str,
    root: str | None,
    epochs: int,
    lr: float,
    train_crop: int,
    batch_size: int,
    seed: int,
    out: str,
) -> None:
    """Fine-tune a prior (or a QPT backbone with a fresh head, --init) with Adam on every image of a database."""
    from metalearn_iqa.inference import FinetuneConfig
    from metalearn_iqa.inference import finetune as run_finetune
    from metalearn_iqa.prior import load_prior
    from metalearn_iqa.qpt.backbone import model_from_backbone

    if bool(checkpoint) == bool(init):
        raise CLIError("give either --checkpoint (a prior) or --init (a QPT backbone), one of them")
    _writable_file(Path(out), "--out")
    prior = load_prior(checkpoint) if checkpoint else model_from_backbone(str(init), seed)
    records = _load(dataset, root)
    config = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, crop=train_crop, seed=seed)
    tuned = run_finetune(prior, records, config)
    save_model(tuned, prior.config, out)  # type: ignore[arg-type]
    click.echo(f"fine-tuned model ({epochs} epochs on {len(records)} images) -> {out}")


@iqa.command()
@dataset_option
@root_option
@click.option("--checkpoint", type=click.Path(), default=None, help="Model file [newest prior in outputs/].")
@view_options
@click.option("--json", "json_out", type=click.Path(), default=None)
@friendly_errors
def evaluate(
    dataset: str,
    root: str | None,
    checkpoint: str | None,
    crop: int | None,
    crops: str,
    max_side: int | None,
    json_out: str | None,
) -> None:
    """SROCC, PLCC (raw and 4-parameter logistic), KRCC and RMSE of a model on a database."""
    from metalearn_iqa.inference import display_side, evaluate_records
    from metalearn_iqa.metrics import LOGISTIC_MIN_ITEMS
    from metalearn_iqa.prior import load_prior

    if json_out:
        _writable_file(Path(json_out), "--json")
    path = _resolve_checkpoint(checkpoint)
    config = _eval_config(crop, crops, max_side, display_side(dataset))
    model = load_prior(path)
    records = _load(dataset, root)
    metrics, _ = evaluate_records(model, records, config, progress=True)
    if metrics["srocc"] is None:
        click.echo("warning: the correlations are undefined: predictions or scores are all equal", err=True)
    for key, value in metrics.items():
        if value is None and metrics["srocc"] is None:
            click.echo(f"{key:14s} undefined")
        elif value is None:
            click.echo(f"{key:14s} n/a (fit skipped below {LOGISTIC_MIN_ITEMS} images)")
        else:
            click.echo(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")
    if json_out:
        report = {"checkpoint": str(path), "dataset": dataset, "view": asdict(config), **metrics}
        _write_output(Path(json_out), json.dumps(report, indent=2) + "\n")


def _collect_images(inputs: tuple[str, ...]) -> list[Path]:
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            images.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    if not images:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(inputs)}")
    return images


@iqa.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", type=click.Path(), default=None, help="Model file [newest prior in outputs/].")
@view_options
@click.option("--csv", "csv_out", type=click.Path(), default=None, help="Write path,score here.")
@click.option(
    "--saliency",
    type=click.Path(),
    default=None,
    help="Write a gradient map (d score / d pixel) per image into this folder.",
)
@WORKERS_OPTION
@friendly_errors
def predict(
    inputs: tuple[str, ...],
    checkpoint: str | None,
    crop: int | None,
    crops: str,
    max_side: int | None,
    csv_out: str | None,
    saliency: str | None,
    workers: int,
) -> None:
    """Predict a quality score (higher = better, about 0..1) for each image or every image in a folder."""
    import csv

    from metalearn_iqa.inference import PHOTO_SIDE, predict_records
    from metalearn_iqa.prior import load_prior

    if csv_out:
        _writable_file(Path(csv_out), "--csv")
    if saliency:
        _writable_folder(Path(saliency), "--saliency")
    path = _resolve_checkpoint(checkpoint)
    config = dataclasses.replace(_eval_config(crop, crops, max_side, PHOTO_SIDE), workers=workers)
    model = load_prior(path)
    images = _collect_images(inputs)
    scores = predict_records(model, [str(p) for p in images], config)
    for image, score in zip(images, scores):
        click.echo(f"{score:.4f}  {image}")
    if csv_out:
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(["path", "score"])
        writer.writerows((str(p), f"{s:.6f}") for p, s in zip(images, scores))
        _write_output(Path(csv_out), table.getvalue())
    if saliency:
        _write_saliency(model, images, Path(saliency), config)


def saliency_names(images: list[Path]) -> dict[Path, str]:
    """One distinct map name per image: `a.png` -> `a_png_gradient.png`, so `a.png` and `a.jpg` keep
    separate maps; images of the same name in different folders get `-2`, `-3` ... in input order."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in images:
        base = f"{path.stem}_{path.suffix.lstrip('.')}" if path.suffix else path.stem
        name, count = f"{base}_gradient.png", 1
        while name.lower() in used:  # case-insensitive file systems would merge a.PNG and a.png
            count += 1
            name = f"{base}-{count}_gradient.png"
        used.add(name.lower())
        names[path] = name
    return names


def _write_saliency(model: Any, images: list[Path], folder: Path, config: EvalConfig) -> None:
    """A gradient map per image over what is scored: the whole (downscaled) image, or its centre crop."""
    from PIL import Image

    from metalearn_iqa.images import centre_crop, downscale, normalise, read_image
    from metalearn_iqa.saliency import gradient_map, save_gradient_map

    folder.mkdir(parents=True, exist_ok=True)
    names = saliency_names(images)
    for path in images:
        view = downscale(read_image(path), config.max_side)
        if config.crop is not None:
            view = centre_crop(view, config.crop)
        grad = gradient_map(model, normalise(view[None])[0])
        shown = Image.fromarray(view.permute(1, 2, 0).numpy())
        out = save_gradient_map(shown, grad, folder / names[path], title=path.name)
        click.echo(f"gradient map -> {out}")


@iqa.command()
@dataset_option
@root_option
@click.option("--types", default=None, help="Comma-separated types to hold out one at a time [all].")
@prior_options
@init_option
@finetune_options
@view_options
@click.option("--out", type=click.Path(), default=None, help="[outputs/lodo-DATASET-ALGO]")
@click.option("--resume", is_flag=True, help="Continue the folds' runs (same settings).")
@loader_options
@overwrite_option
@torchrun_command
@friendly_errors
def lodo(
    dataset: str,
    root: str | None,
    types: str | None,
    finetune_epochs: int,
    finetune_lr: float,
    crop: int | None,
    crops: str,
    max_side: int | None,
    out: str | None,
    resume: bool,
    overwrite: bool,
    **kw: Any,
) -> None:
    """Leave-one-distortion-out (Table 2): a prior per held-out type, tested zero-shot on all its images.

    With --finetune-epochs > 0 (default) also fine-tuned on half of the type's contents, tested on the rest.
    """
    from metalearn_iqa.inference import display_side
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.protocols.lodo import LodoConfig, run_lodo

    _run_mode(resume, overwrite)
    prior = _prior_config(kw)
    held_out = _parse_types(types)
    config = LodoConfig(
        prior=prior,
        folds=[(t,) for t in held_out] if held_out else None,
        finetune=_finetune_config(finetune_epochs, finetune_lr, prior),
        eval=_eval_config(crop, crops, max_side, display_side(dataset)),
    )
    out_dir = Path(out) if out else default_output_dir() / f"lodo-{dataset}-{prior.algorithm}"
    _writable_folder(out_dir, "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        records, store = _load(dataset, root), _image_store(kw)
        result = run_lodo(records, config, out_dir, resume=resume, overwrite=overwrite, store=store)
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@iqa.command()
@click.option(
    "--prior",
    "prior_path",
    type=click.Path(),
    default=None,
    help="Use this prior instead of training one (its algorithm and init come from the record inside it).",
)
@click.option(
    "--prior-dataset", "prior_datasets", multiple=True, help="Databases to meta-train on [synthetic]."
)
@click.option("--prior-root", "prior_roots", multiple=True, type=click.Path())
@click.option("--target", required=True, help="Authentic database: koniq10k, livec, cid2013.")
@click.option("--target-root", required=True, type=click.Path())
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Seeded splits (cid2013: distinct 4-of-6 image-set choices, at most 15).",
)
@finetune_options
@prior_options
@init_option
@view_options
@click.option("--out", type=click.Path(), default=None, help="[outputs/cross-TARGET-ALGO]")
@click.option("--resume", is_flag=True, help="Continue the prior's run (same settings).")
@loader_options
@overwrite_option
@torchrun_command
@friendly_errors
def cross(
    prior_path: str | None,
    prior_datasets: tuple[str, ...],
    prior_roots: tuple[str, ...],
    target: str,
    target_root: str,
    repeats: int,
    finetune_epochs: int,
    finetune_lr: float,
    crop: int | None,
    crops: str,
    max_side: int | None,
    out: str | None,
    resume: bool,
    overwrite: bool,
    **kw: Any,
) -> None:
    """Synthetic-to-authentic (Tables 3-4): prior, then fine-tune on 80% and test on 20%, over seeded splits."""
    from metalearn_iqa.inference import display_side
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.prior import load_prior, train_prior
    from metalearn_iqa.protocols.cross import CrossConfig, prior_provenance, run_cross
    from metalearn_iqa.protocols.report import init_label

    _run_mode(resume, overwrite)
    if prior_path and kw.get("init"):
        raise CLIError("use either --prior (a finished prior) or --init (a QPT backbone to train from)")
    config = _prior_config(kw)
    cross_config = CrossConfig(
        repeats=repeats,
        seed=config.seed,
        finetune=_finetune_config(finetune_epochs, finetune_lr, config),
        eval=_eval_config(crop, crops, max_side, display_side(target)),
    )
    if prior_path:
        provenance = prior_provenance(prior_path)
    else:
        provenance = {"algorithm": config.algorithm, "init": init_label(config.model.pretrained)}
    name = f"cross-{target}-{provenance['algorithm']}"
    out_dir = _writable_folder(Path(out) if out else default_output_dir() / name, "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        target_records, store = _load(target, target_root), _image_store(kw)
        if prior_path:
            prior = load_prior(prior_path)
        else:
            records = _load_many(prior_datasets or ("synthetic",), prior_roots)
            prior, _ = train_prior(
                config, records, out_dir / "prior", resume=resume, overwrite=overwrite, store=store
            )
        result = run_cross(prior, target_records, cross_config, out_dir, target, name, provenance, store)
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@iqa.command()
@click.option("--out", type=click.Path(), default=None, help="[outputs/demo]")
@click.option(
    "--seeds", default="0,1", show_default=True, help="Comma-separated seeds (content split, init, sampling)."
)
@click.option(
    "--epochs", type=click.FloatRange(min=0, min_open=True), default=None, help="Override the priors' budget."
)
@click.option("--resume", is_flag=True, help="Reuse finished priors in the output folder.")
@loader_options
@overwrite_option
@friendly_errors
def demo(out: str | None, seeds: str, epochs: float | None, resume: bool, overwrite: bool, **kw: Any) -> None:
    """On the embedded synthetic database: train a MetaIQA prior and the fair baseline, compare them."""
    from metalearn_iqa.demo import DemoConfig, run_demo
    from metalearn_iqa.paths import default_output_dir

    config = DemoConfig(seeds=_parse_types(seeds, "--seeds"))
    if not config.seeds:
        raise CLIError("--seeds needs at least one seed")
    if epochs:
        config.epochs = epochs
    _run_mode(resume, overwrite)
    out_dir = _writable_folder(Path(out) if out else default_output_dir() / "demo", "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        result = run_demo(config, out_dir, resume=resume, overwrite=overwrite, store=_image_store(kw))
    click.echo(result["table"])


@iqa.command()
@click.option(
    "--method",
    type=click.Choice(["qpt"]),
    default="qpt",
    show_default=True,
    help="qpt: quality-aware contrastive pre-training on unlabelled images (Zhao et al., CVPR 2023).",
)
@click.option(
    "--images",
    type=click.Path(),
    default=None,
    help="A folder of unlabelled images (searched recursively) [the embedded database's 48 reference photos].",
)
@model_options
@click.option("--iterations", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=0.2, show_default=True)
@click.option(
    "--momentum",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="0: in-batch form (both patches through the network); > 0: MoCo form, keys from a momentum copy.",
)
@click.option(
    "--queue", type=click.IntRange(0), default=0, show_default=True, help="Momentum form: queued keys."
)
@click.option("--images-per-batch", type=click.IntRange(1), default=4, show_default=True)
@click.option(
    "--chains-per-image",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Degradation chains per source image in a batch (>= 2: same-content negatives).",
)
@click.option("--patch", type=click.IntRange(32), default=64, show_default=True, help="Patch side.")
@click.option(
    "--region",
    type=click.IntRange(32),
    default=128,
    show_default=True,
    help="Side of the random crop of a source that is degraded (then cut into two patches).",
)
@click.option("--exclude-types", default=None, help="Comma-separated distortion types never applied.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--out", type=click.Path(), default=None, help="Run folder [outputs/qpt-BACKBONE].")
@click.option(
    "--resume", is_flag=True, help="Continue from the run folder's last checkpoint (same settings)."
)
@overwrite_option
@friendly_errors
def pretrain(
    method: str,
    images: str | None,
    iterations: int,
    lr: float,
    temperature: float,
    momentum: float,
    queue: int,
    images_per_batch: int,
    chains_per_image: int,
    patch: int,
    region: int,
    exclude_types: str | None,
    seed: int,
    device: str,
    out: str | None,
    resume: bool,
    overwrite: bool,
    **kw: Any,
) -> None:
    """Pre-train a backbone without labels (QPT); write it, projection head dropped, for --init."""
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.qpt.data import BatchConfig, folder_images, load_images, reference_images
    from metalearn_iqa.qpt.degradations import ALL_TYPES, DegradationConfig, space_size
    from metalearn_iqa.qpt.pretrain import QPTConfig
    from metalearn_iqa.qpt.pretrain import pretrain as run_pretrain

    _run_mode(resume, overwrite)
    _check_device(device)
    excluded = set(_parse_types(exclude_types, "--exclude-types"))
    config = QPTConfig(
        iterations=iterations,
        lr=lr,
        temperature=temperature,
        momentum=momentum,
        queue=queue,
        seed=seed,
        device=device,
        batch=BatchConfig(images_per_batch, chains_per_image, patch, region),
        degradations=DegradationConfig(types=tuple(t for t in ALL_TYPES if t not in excluded)),
        model=_model_config(kw),
    )
    out_dir = _writable_folder(
        Path(out) if out else default_output_dir() / f"{method}-{config.model.backbone}", "--out"
    )
    if images:
        paths = folder_images(images)
        pictures, source = load_images(paths, min_side=patch), f"{images} ({len(paths)} images)"
    else:
        pictures, source = reference_images(), "the embedded reference photos"
    path = run_pretrain(config, pictures, out_dir, resume=resume, overwrite=overwrite, source=source)
    d = config.degradations
    click.echo(
        f"degradation space: {space_size(d):,} ordered chains of {d.min_count}-{d.max_count} distinct types "
        f"of {len(d.types)}, strengths quantised to {d.steps} levels over [1, 5] (drawn continuous)"
    )
    click.echo(
        f"{iterations} iterations, {config.passes()} patch passes on {source}; backbone (projection head "
        f"dropped) -> {path}; start from it with --init {path}"
    )
