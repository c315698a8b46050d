"""`metalearn iqa lodo`, `cross` and `demo`: the paper's protocols and the embedded-database comparison."""

from __future__ import annotations

from pathlib import Path

import click

from metalearn.cli.torchrun import torchrun_command
from metalearn.cli.types import POSITIVE, DistinctInts
from metalearn.runs import check_run_mode, lock_run_dir
from metalearn_iqa.cli.datasets import load, load_many, note_if_upscaled
from metalearn_iqa.cli.errors import CLIError, friendly_errors
from metalearn_iqa.cli.files import writable_folder
from metalearn_iqa.cli.options import DATASET_OPTION, OVERWRITE_OPTION, ROOT_OPTION, ViewOptions, view_options
from metalearn_iqa.cli.training_options import (
    FinetuneOptions,
    LoaderOptions,
    PriorOptions,
    finetune_options,
    loader_options,
    prior_options,
)


@click.command()
@torchrun_command
@friendly_errors
@DATASET_OPTION
@ROOT_OPTION
@click.option(
    "--types",
    type=DistinctInts(),
    default=None,
    help="Comma-separated types to hold out one at a time [all].",
)
@prior_options
@finetune_options
@view_options
@click.option("--out", type=click.Path(), default=None, help="[outputs/lodo-DATASET-ALGO]")
@click.option("--resume", is_flag=True, help="Continue the folds' runs (same settings).")
@loader_options
@OVERWRITE_OPTION
def lodo(
    dataset: str,
    root: str | None,
    types: tuple[int, ...] | None,
    prior: PriorOptions,
    finetune: FinetuneOptions,
    view: ViewOptions,
    out: str | None,
    resume: bool,
    loader: LoaderOptions,
    overwrite: bool,
) -> None:
    """Leave-one-distortion-out (Table 2): a prior per held-out type, tested zero-shot on all its images.

    With --finetune-epochs > 0 (default) also fine-tuned on half of the type's contents, tested on the rest.
    """
    from metalearn_iqa.cli.paths import default_output_dir
    from metalearn_iqa.evaluation.predict import display_side
    from metalearn_iqa.protocols.lodo import LodoConfig, run_lodo

    check_run_mode(resume, overwrite)
    prior_config = prior.config()
    held_out = types or ()
    config = LodoConfig(
        prior=prior_config,
        folds=[(t,) for t in held_out] if held_out else None,
        finetune=finetune.config(prior_config),
        eval=view.config(display_side(dataset)),
    )
    out_dir = Path(out) if out else default_output_dir() / f"lodo-{dataset}-{prior_config.algorithm}"
    writable_folder(out_dir, "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        records, store = load(dataset, root), loader.store()
        note_if_upscaled(records, prior_config.task.crop)
        result = run_lodo(records, config, out_dir, resume=resume, overwrite=overwrite, store=store)
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@click.command()
@torchrun_command
@friendly_errors
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
@view_options
@click.option("--out", type=click.Path(), default=None, help="[outputs/cross-TARGET-ALGO]")
@click.option("--resume", is_flag=True, help="Continue the prior's run (same settings).")
@loader_options
@OVERWRITE_OPTION
# lodo and cross end on the same option stack and parameters on purpose: their --help lists the shared
# options alike; the values are already shared (one definition each in options.py/training_options.py).
def cross(
    prior_path: str | None,
    prior_datasets: tuple[str, ...],
    prior_roots: tuple[str, ...],
    target: str,
    target_root: str,
    repeats: int,
    finetune: FinetuneOptions,
    prior: PriorOptions,
    view: ViewOptions,
    out: str | None,
    resume: bool,
    loader: LoaderOptions,
    overwrite: bool,
) -> None:
    """Synthetic-to-authentic (Tables 3-4): prior, then fine-tune on 80% and test on 20%, over seeded splits."""
    from metalearn_iqa.cli.paths import default_output_dir
    from metalearn_iqa.evaluation.predict import display_side
    from metalearn_iqa.protocols.cross import CrossConfig, prior_provenance, run_cross
    from metalearn_iqa.training.prior import load_prior, train_prior

    check_run_mode(resume, overwrite)
    if prior_path and prior.init:
        raise CLIError("use either --prior (a finished prior) or --init (a QPT backbone to train from)")
    config = prior.config()
    cross_config = CrossConfig(
        repeats=repeats,
        seed=config.trainer.seed,
        finetune=finetune.config(config),
        eval=view.config(display_side(target)),
    )
    if prior_path:
        provenance = prior_provenance(prior_path)
    else:
        provenance = {"algorithm": config.algorithm, "init": config.init_label}
    name = f"cross-{target}-{provenance['algorithm']}"
    out_dir = writable_folder(Path(out) if out else default_output_dir() / name, "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        target_records, store = load(target, target_root), loader.store()
        if prior_path:
            model = load_prior(prior_path)
        else:
            records = load_many(prior_datasets or ("synthetic",), prior_roots, "--prior-dataset")
            note_if_upscaled(records, config.task.crop)
            model, _ = train_prior(
                config, records, out_dir / "prior", resume=resume, overwrite=overwrite, store=store
            )
        result = run_cross(model, target_records, cross_config, out_dir, target, name, provenance, store)
    click.echo(result["table"])
    click.echo(f"results -> {out_dir}")


@click.command()
@friendly_errors
@click.option("--out", type=click.Path(), default=None, help="[outputs/demo]")
@click.option(
    "--seeds",
    type=DistinctInts(0),
    default="0,1,2",
    show_default=True,
    help="Comma-separated seeds (content split, init, sampling).",
)
@click.option("--epochs", type=POSITIVE, default=None, help="Override the priors' budget.")
@click.option("--resume", is_flag=True, help="Reuse finished priors in the output folder.")
@loader_options
@OVERWRITE_OPTION
def demo(
    out: str | None,
    seeds: tuple[int, ...],
    epochs: float | None,
    resume: bool,
    loader: LoaderOptions,
    overwrite: bool,
) -> None:
    """On the embedded synthetic database: train a MetaIQA prior and the fair baseline, compare them."""
    from metalearn_iqa.cli.paths import default_output_dir
    from metalearn_iqa.protocols.demo import run_demo
    from metalearn_iqa.protocols.heldout import DemoConfig

    config = DemoConfig(seeds=seeds)
    if not config.seeds:
        raise CLIError("--seeds needs at least one seed")
    if epochs:
        config.epochs = epochs
    check_run_mode(resume, overwrite)
    out_dir = writable_folder(Path(out) if out else default_output_dir() / "demo", "--out")
    with lock_run_dir(out_dir):  # a second command on this folder fails at once
        result = run_demo(config, out_dir, resume=resume, overwrite=overwrite, store=loader.store())
    click.echo(result["table"])
