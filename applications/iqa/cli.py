"""`metalearn iqa ...`: train, fine-tune, evaluate and apply NR-IQA quality priors from the command line."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from metalearn_iqa.data.records import DatasetError, IQARecord, write_table
from metalearn_iqa.model import ModelConfig, WeightsError, save_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class CLIError(click.ClickException):
    """A one-line error with exit code 2 (bad input), never a traceback."""

    exit_code = 2


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors into one-line CLI errors with a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DatasetError, WeightsError, FileNotFoundError, ValueError, ImportError) as exc:
            raise CLIError(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from None

    return wrapper


def _load(name: str, root: str | None) -> list[IQARecord]:
    from metalearn_iqa.data.registry import load_dataset

    if root is None and name.lower() != "synthetic":
        raise CLIError(f"--root is required for dataset {name!r}")
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
    """Backbone initialisation and head choice."""
    options = [
        click.option(
            "--head",
            type=click.Choice(["paper", "authors"]),
            default="paper",
            show_default=True,
            help="paper: GAP->FC->FC(1); authors: their code's 1000->1024->512->1 head.",
        ),
        click.option(
            "--pretrained/--no-pretrained",
            default=False,
            show_default=True,
            help="Start the backbone from torchvision's ImageNet weights (cache or download).",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            default=None,
            help="A resnet18 state_dict file to start the backbone from.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def prior_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Meta-training hyper-parameters shared by train, lodo and cross."""
    from metalearn_iqa.prior import ALGORITHMS

    options = [
        click.option("--algorithm", type=click.Choice(ALGORITHMS), default="metaiqa", show_default=True),
        click.option("--iterations", type=click.IntRange(1), default=500, show_default=True),
        click.option("--tasks-per-batch", type=click.IntRange(1), default=5, show_default=True),
        click.option("--inner-steps", type=click.IntRange(1), default=6, show_default=True),
        click.option("--inner-lr", type=float, default=1e-4, show_default=True),
        click.option("--outer-lr", type=float, default=1e-4, show_default=True),
        click.option("--crop", type=click.IntRange(32), default=224, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ..."),
    ]
    for option in reversed(options):
        func = option(func)
    return model_options(func)


def _model_config(head: str, pretrained: bool, weights: str | None) -> ModelConfig:
    if weights and pretrained:
        raise CLIError("use either --pretrained or --weights, not both")
    return ModelConfig(head=head, pretrained=weights or ("imagenet" if pretrained else "none"))


def _prior_config(kw: dict[str, Any]):  # noqa: ANN202
    from metalearn_iqa.prior import PriorConfig
    from metalearn_iqa.tasks import TaskConfig

    return PriorConfig(
        algorithm=kw["algorithm"],
        iterations=kw["iterations"],
        tasks_per_batch=kw["tasks_per_batch"],
        inner_steps=kw["inner_steps"],
        inner_lr=kw["inner_lr"],
        outer_lr=kw["outer_lr"],
        seed=kw["seed"],
        device=kw["device"],
        task=TaskConfig(crop=kw["crop"], batch_size=kw["batch_size"], batches=kw["inner_steps"]),
        model=_model_config(kw["head"], kw["pretrained"], kw["weights"]),
    )


def _eval_config(crop: int, crops: int):  # noqa: ANN202
    from metalearn_iqa.inference import EvalConfig

    return EvalConfig(crop=crop, crops=crops)


def _training_crop(checkpoint: Path, crop: int | None) -> int:
    """The crop given, else the one the prior was trained with (from its `prior.json`), else 224."""
    if crop is not None:
        return crop
    summary = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "prior.json"
    try:
        return int(json.loads(summary.read_text())["config"]["task"]["crop"])
    except (OSError, ValueError, KeyError, TypeError):
        return 224


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


dataset_option = click.option(
    "--dataset", required=True, help="tid2013, kadid10k, koniq10k, livec, cid2013, synthetic"
)
root_option = click.option(
    "--root", type=click.Path(), default=None, help="The database folder as published."
)
test_crop_option = click.option(
    "--crop",
    type=click.IntRange(32),
    default=None,
    help="Test crop [the crop the prior was trained with, else 224].",
)


@click.group()
def iqa() -> None:
    """No-reference image quality assessment with meta-learned quality priors (MetaIQA)."""


@iqa.command()
@dataset_option
@root_option
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV file to write.")
@friendly_errors
def data(dataset: str, root: str | None, out: str) -> None:
    """Write the table a loader sees (path, score in [0,1], raw score, type, level, reference, set)."""
    records = _load(dataset, root)
    write_table(records, out)
    click.echo(f"{len(records)} images from {dataset} -> {out}")


@iqa.command()
@click.option("--dataset", "datasets", multiple=True, required=True, help="Repeat to pool databases.")
@click.option(
    "--root", "roots", multiple=True, type=click.Path(), help="One per --dataset (none for synthetic)."
)
@click.option("--exclude-types", default=None, help="Comma-separated distortion types to leave out.")
@prior_options
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Run folder [outputs/prior-ALGO]."
)
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@friendly_errors
def train(
    datasets: tuple[str, ...],
    roots: tuple[str, ...],
    exclude_types: str | None,
    out: str | None,
    resume: bool,
    **kw: Any,
) -> None:
    """Meta-train a quality prior on distortion-specific tasks (or the plain-Adam baseline)."""
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.prior import PRIOR_FILE, train_prior

    config = _prior_config(kw)
    excluded = set(_parse_types(exclude_types, "--exclude-types"))
    records = [r for r in _load_many(datasets, roots) if r.distortion not in excluded]
    out_dir = Path(out) if out else default_output_dir() / f"prior-{config.algorithm}"
    train_prior(config, records, out_dir, resume=resume)
    click.echo(f"prior written to {out_dir / PRIOR_FILE}")


@iqa.command()
@click.option("--checkpoint", type=click.Path(), required=True, help="A prior.pt (or its folder).")
@dataset_option
@root_option
@click.option("--steps", type=click.IntRange(0), default=100, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--crop", type=click.IntRange(32), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False), required=True, help="Where to save the fine-tuned model."
)
@friendly_errors
def finetune(
    checkpoint: str,
    dataset: str,
    root: str | None,
    steps: int,
    lr: float,
    crop: int,
    batch_size: int,
    seed: int,
    out: str,
) -> None:
    """Fine-tune a prior with Adam on every image of a (training) database, as in the paper."""
    from metalearn_iqa.inference import FinetuneConfig
    from metalearn_iqa.inference import finetune as run_finetune
    from metalearn_iqa.prior import load_prior

    prior = load_prior(checkpoint)
    records = _load(dataset, root)
    tuned = run_finetune(
        prior, records, FinetuneConfig(steps=steps, lr=lr, batch_size=batch_size, crop=crop, seed=seed)
    )
    save_model(tuned, prior.config, out)  # type: ignore[arg-type]
    click.echo(f"fine-tuned model ({steps} steps on {len(records)} images) -> {out}")


@iqa.command()
@dataset_option
@root_option
@click.option("--checkpoint", type=click.Path(), default=None, help="Model file [newest prior in outputs/].")
@test_crop_option
@click.option(
    "--crops", type=click.Choice(["1", "5"]), default="1", show_default=True, help="Centre, or 5 crops."
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@friendly_errors
def evaluate(
    dataset: str, root: str | None, checkpoint: str | None, crop: int | None, crops: str, json_out: str | None
) -> None:
    """SROCC, PLCC (raw and 4-parameter logistic), KRCC and RMSE of a model on a database."""
    from metalearn_iqa.inference import evaluate_records
    from metalearn_iqa.prior import load_prior

    path = _resolve_checkpoint(checkpoint)
    model = load_prior(path)
    records = _load(dataset, root)
    crop = _training_crop(path, crop)
    metrics, _ = evaluate_records(model, records, _eval_config(crop, int(crops)), progress=True)
    for key, value in metrics.items():
        click.echo(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")
    if json_out:
        Path(json_out).write_text(
            json.dumps({"checkpoint": str(path), "dataset": dataset, **metrics}, indent=2)
        )


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
@test_crop_option
@click.option("--crops", type=click.Choice(["1", "5"]), default="5", show_default=True)
@click.option(
    "--csv", "csv_out", type=click.Path(dir_okay=False), default=None, help="Write path,score here."
)
@click.option(
    "--saliency",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a gradient map (d score / d pixel) per image into this folder.",
)
@friendly_errors
def predict(
    inputs: tuple[str, ...],
    checkpoint: str | None,
    crop: int | None,
    crops: str,
    csv_out: str | None,
    saliency: str | None,
) -> None:
    """Predict a quality score (higher = better, about 0..1) for each image or every image in a folder."""
    import csv

    from metalearn_iqa.inference import predict_records
    from metalearn_iqa.prior import load_prior

    path = _resolve_checkpoint(checkpoint)
    model = load_prior(path)
    images = _collect_images(inputs)
    crop = _training_crop(path, crop)
    scores = predict_records(model, [str(p) for p in images], _eval_config(crop, int(crops)))
    for image, score in zip(images, scores):
        click.echo(f"{score:.4f}  {image}")
    if csv_out:
        with open(csv_out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "score"])
            writer.writerows((str(p), f"{s:.6f}") for p, s in zip(images, scores))
    if saliency:
        _write_saliency(model, images, Path(saliency), crop)


def _write_saliency(model: Any, images: list[Path], folder: Path, crop: int) -> None:
    from PIL import Image

    from metalearn_iqa.images import centre_crop, normalise, read_image
    from metalearn_iqa.saliency import gradient_map, save_gradient_map

    folder.mkdir(parents=True, exist_ok=True)
    for path in images:
        view = centre_crop(read_image(path), crop)
        grad = gradient_map(model, normalise(view[None])[0])
        shown = Image.fromarray(view.permute(1, 2, 0).numpy())
        out = save_gradient_map(shown, grad, folder / f"{path.stem}_gradient.png", title=path.name)
        click.echo(f"gradient map -> {out}")


@iqa.command()
@dataset_option
@root_option
@click.option("--types", default=None, help="Comma-separated types to hold out one at a time [all].")
@prior_options
@click.option(
    "--finetune-steps",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Adam steps on half of the held-out type's contents before testing on the other half.",
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[outputs/lodo-DATASET-ALGO]")
@click.option("--resume", is_flag=True)
@friendly_errors
def lodo(
    dataset: str,
    root: str | None,
    types: str | None,
    finetune_steps: int,
    out: str | None,
    resume: bool,
    **kw: Any,
) -> None:
    """Leave-one-distortion-out (Table 2): a prior per held-out type, SROCC on that type."""
    from metalearn_iqa.inference import EvalConfig, FinetuneConfig
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.protocols.lodo import LodoConfig, run_lodo

    prior = _prior_config(kw)
    held_out = _parse_types(types)
    config = LodoConfig(
        prior=prior,
        folds=[(t,) for t in held_out] if held_out else None,
        finetune=FinetuneConfig(
            steps=finetune_steps, lr=prior.inner_lr, crop=prior.task.crop, seed=prior.seed
        ),
        eval=EvalConfig(crop=prior.task.crop),
    )
    out_dir = Path(out) if out else default_output_dir() / f"lodo-{dataset}-{prior.algorithm}"
    result = run_lodo(_load(dataset, root), config, out_dir, resume=resume)
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@iqa.command()
@click.option(
    "--prior", "prior_path", type=click.Path(), default=None, help="Use this prior instead of training one."
)
@click.option(
    "--prior-dataset", "prior_datasets", multiple=True, help="Databases to meta-train on [synthetic]."
)
@click.option("--prior-root", "prior_roots", multiple=True, type=click.Path())
@click.option("--target", required=True, help="Authentic database: koniq10k, livec, cid2013.")
@click.option("--target-root", required=True, type=click.Path())
@click.option("--repeats", type=click.IntRange(1), default=10, show_default=True)
@click.option("--finetune-steps", type=click.IntRange(0), default=100, show_default=True)
@click.option("--finetune-lr", type=float, default=1e-4, show_default=True)
@prior_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[outputs/cross-TARGET-ALGO]")
@click.option("--resume", is_flag=True)
@friendly_errors
def cross(
    prior_path: str | None,
    prior_datasets: tuple[str, ...],
    prior_roots: tuple[str, ...],
    target: str,
    target_root: str,
    repeats: int,
    finetune_steps: int,
    finetune_lr: float,
    out: str | None,
    resume: bool,
    **kw: Any,
) -> None:
    """Synthetic-to-authentic (Tables 3-4): prior, then fine-tune on 80% and test on 20%, over seeded splits."""
    from metalearn_iqa.inference import EvalConfig, FinetuneConfig
    from metalearn_iqa.paths import default_output_dir
    from metalearn_iqa.prior import load_prior, train_prior
    from metalearn_iqa.protocols.cross import CrossConfig, run_cross

    config = _prior_config(kw)
    out_dir = Path(out) if out else default_output_dir() / f"cross-{target}-{config.algorithm}"
    target_records = _load(target, target_root)
    if prior_path:
        prior = load_prior(prior_path)
    else:
        records = _load_many(prior_datasets or ("synthetic",), prior_roots)
        prior, _ = train_prior(config, records, out_dir / "prior", resume=resume)
    cross_config = CrossConfig(
        repeats=repeats,
        seed=config.seed,
        finetune=FinetuneConfig(
            steps=finetune_steps, lr=finetune_lr, crop=config.task.crop, seed=config.seed
        ),
        eval=EvalConfig(crop=config.task.crop),
    )
    result = run_cross(
        prior, target_records, cross_config, out_dir, target, f"cross-{target}-{config.algorithm}"
    )
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@iqa.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[outputs/demo]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--iterations", type=click.IntRange(1), default=None, help="Override the demo's outer iterations."
)
@click.option("--resume", is_flag=True, help="Reuse finished priors in the output folder.")
@friendly_errors
def demo(out: str | None, seed: int, iterations: int | None, resume: bool) -> None:
    """On the embedded synthetic database: meta-train a prior and the baseline, compare on held-out types."""
    from metalearn_iqa.demo import DemoConfig, run_demo
    from metalearn_iqa.paths import default_output_dir

    config = DemoConfig(seed=seed)
    if iterations:
        config.iterations = iterations
    result = run_demo(config, Path(out) if out else default_output_dir() / "demo", resume=resume)
    click.echo(result["table"])
