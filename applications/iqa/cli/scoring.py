"""`metalearn iqa evaluate` and `predict`: a model's correlations on a database, its scores (and maps) for images."""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metalearn_iqa.cli.datasets import load
from metalearn_iqa.cli.errors import friendly_errors
from metalearn_iqa.cli.files import (
    collect_images,
    resolve_checkpoint,
    writable_file,
    writable_folder,
    write_output,
)
from metalearn_iqa.cli.options import (
    DATASET_OPTION,
    MODEL_FILE_OPTION,
    ROOT_OPTION,
    WORKERS_OPTION,
    ViewOptions,
    view_options,
)

if TYPE_CHECKING:
    from metalearn_iqa.evaluation.predict import EvalConfig


@click.command()
@friendly_errors
@DATASET_OPTION
@ROOT_OPTION
@MODEL_FILE_OPTION
@view_options
@click.option("--json", "json_out", type=click.Path(), default=None)
def evaluate(
    dataset: str, root: str | None, checkpoint: str | None, view: ViewOptions, json_out: str | None
) -> None:
    """SROCC, PLCC (raw and 4-parameter logistic), KRCC and RMSE of a model on a database."""
    from metalearn_iqa.evaluation.metrics import LOGISTIC_MIN_ITEMS
    from metalearn_iqa.evaluation.predict import display_side, evaluate_records
    from metalearn_iqa.training.prior import load_prior

    if json_out:
        writable_file(Path(json_out), "--json")
    path = resolve_checkpoint(checkpoint)
    config = view.config(display_side(dataset))
    model = load_prior(path)
    records = load(dataset, root)
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
        write_output(Path(json_out), json.dumps(report, indent=2) + "\n")


@click.command()
@friendly_errors
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@MODEL_FILE_OPTION
@view_options
@click.option("--csv", "csv_out", type=click.Path(), default=None, help="Write path,score here.")
@click.option(
    "--saliency",
    type=click.Path(),
    default=None,
    help="Write a gradient map (d score / d pixel) per image into this folder.",
)
@WORKERS_OPTION
def predict(
    inputs: tuple[str, ...],
    checkpoint: str | None,
    view: ViewOptions,
    csv_out: str | None,
    saliency: str | None,
    workers: int,
) -> None:
    """Predict a quality score (higher = better, about 0..1) for each image or every image in a folder."""
    import csv

    from metalearn_iqa.evaluation.predict import PHOTO_SIDE, predict_records
    from metalearn_iqa.training.prior import load_prior

    if csv_out:
        writable_file(Path(csv_out), "--csv")
    if saliency:
        writable_folder(Path(saliency), "--saliency")
    path = resolve_checkpoint(checkpoint)
    config = dataclasses.replace(view.config(PHOTO_SIDE), workers=workers)
    model = load_prior(path)
    images = collect_images(inputs)
    scores = predict_records(model, [str(p) for p in images], config)
    for image, score in zip(images, scores):
        click.echo(f"{score:.4f}  {image}")
    if csv_out:
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(["path", "score"])
        writer.writerows((str(p), f"{s:.6f}") for p, s in zip(images, scores))
        write_output(Path(csv_out), table.getvalue())
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

    from metalearn_iqa.evaluation.saliency import gradient_map, save_gradient_map
    from metalearn_iqa.images.decode import read_image
    from metalearn_iqa.images.transforms import centre_crop, downscale, normalise

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
