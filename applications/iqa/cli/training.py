"""`metalearn iqa train`, `finetune` and `pretrain`: a meta-learned prior, a fine-tuned model, a QPT backbone."""

from __future__ import annotations

import json
from pathlib import Path

import click

from metalearn.cli.torchrun import torchrun_command
from metalearn.distributed import on_main
from metalearn.runs import check_run_mode
from metalearn_iqa.cli.datasets import load, load_many, parse_types
from metalearn_iqa.cli.errors import CLIError, friendly_errors
from metalearn_iqa.cli.files import writable_file, writable_folder
from metalearn_iqa.cli.options import (
    DATASET_OPTION,
    INIT_OPTION,
    OVERWRITE_OPTION,
    ROOT_OPTION,
    SEED_OPTION,
    TRAIN_CROP_OPTION,
)
from metalearn_iqa.cli.training_options import LoaderOptions, PriorOptions, loader_options, prior_options
from metalearn_iqa.model.weights import save_model


@click.command()
@torchrun_command
@friendly_errors
@click.option("--dataset", "datasets", multiple=True, required=True, help="Repeat to pool databases.")
@click.option(
    "--root", "roots", multiple=True, type=click.Path(), help="One per --dataset (none for synthetic)."
)
@click.option("--exclude-types", default=None, help="Comma-separated distortion types to leave out.")
@prior_options
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
@OVERWRITE_OPTION
def train(
    datasets: tuple[str, ...],
    roots: tuple[str, ...],
    exclude_types: str | None,
    prior: PriorOptions,
    out: str | None,
    resume: bool,
    checkpoint_every: int,
    loader: LoaderOptions,
    overwrite: bool,
) -> None:
    """Meta-train a quality prior on distortion-specific tasks (or the plain-training baseline); print the passes."""
    from metalearn_iqa.cli.paths import default_output_dir
    from metalearn_iqa.training.prior import PRIOR_FILE, SUMMARY_FILE, train_prior

    check_run_mode(resume, overwrite)
    config = prior.config()
    out_dir = writable_folder(
        Path(out) if out else default_output_dir() / f"prior-{config.algorithm}", "--out"
    )
    excluded = set(parse_types(exclude_types, "--exclude-types"))
    records = [r for r in load_many(datasets, roots) if r.distortion not in excluded]
    train_prior(
        config,
        records,
        out_dir,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=checkpoint_every,
        store=loader.store(),
    )
    summary = on_main(lambda: json.loads((out_dir / SUMMARY_FILE).read_text()))  # rank 0 wrote it
    click.echo(
        f"{summary['iterations']} iterations, {summary['passes']} forward+backward passes of {config.task.batch_size} "
        f"crops ({summary['passes'] / config.passes_per_epoch(len(records)):.2f} epochs of {len(records)} images)"
    )
    click.echo(f"prior written to {out_dir / PRIOR_FILE}")


@click.command()
@friendly_errors
@click.option("--checkpoint", type=click.Path(), default=None, help="A prior.pt (or its folder).")
@INIT_OPTION
@DATASET_OPTION
@ROOT_OPTION
@click.option(
    "--epochs",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Passes over the database's images (lr x0.8 every 5 epochs).",
)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@TRAIN_CROP_OPTION
@click.option("--batch-size", type=click.IntRange(2), default=8, show_default=True)
@SEED_OPTION
@click.option("--out", type=click.Path(), required=True, help="Where to save the fine-tuned model.")
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
    from metalearn_iqa.qpt.backbone import model_from_backbone
    from metalearn_iqa.training.finetune import FinetuneConfig
    from metalearn_iqa.training.finetune import finetune as run_finetune
    from metalearn_iqa.training.prior import load_prior

    if bool(checkpoint) == bool(init):
        raise CLIError("give either --checkpoint (a prior) or --init (a QPT backbone), one of them")
    writable_file(Path(out), "--out")
    prior = load_prior(checkpoint) if checkpoint else model_from_backbone(str(init), seed)
    records = load(dataset, root)
    config = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, crop=train_crop, seed=seed)
    tuned = run_finetune(prior, records, config)
    save_model(tuned, prior.config, out)  # type: ignore[arg-type]
    click.echo(f"fine-tuned model ({epochs} epochs on {len(records)} images) -> {out}")
