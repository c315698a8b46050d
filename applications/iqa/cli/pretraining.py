"""`metalearn iqa pretrain`: a backbone pre-trained without labels (QPT), written for `--init`."""

from __future__ import annotations

from pathlib import Path

import click

from metalearn.runs import check_run_mode
from metalearn_iqa.cli.datasets import parse_types
from metalearn_iqa.cli.errors import check_device, friendly_errors
from metalearn_iqa.cli.files import writable_folder
from metalearn_iqa.cli.options import (
    DEVICE_OPTION,
    OVERWRITE_OPTION,
    SEED_OPTION,
    ModelOptions,
    model_options,
)


@click.command()
@friendly_errors
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
@SEED_OPTION
@DEVICE_OPTION
@click.option("--out", type=click.Path(), default=None, help="Run folder [outputs/qpt-BACKBONE].")
@click.option(
    "--resume", is_flag=True, help="Continue from the run folder's last checkpoint (same settings)."
)
@OVERWRITE_OPTION
def pretrain(
    method: str,
    images: str | None,
    model: ModelOptions,
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
) -> None:
    """Pre-train a backbone without labels (QPT); write it, projection head dropped, for --init."""
    from metalearn_iqa.cli.paths import default_output_dir
    from metalearn_iqa.qpt.data import BatchConfig, folder_images, load_images, reference_images
    from metalearn_iqa.qpt.degradations import ALL_TYPES, DegradationConfig, space_size
    from metalearn_iqa.qpt.pretrain import QPTConfig
    from metalearn_iqa.qpt.pretrain import pretrain as run_pretrain

    check_run_mode(resume, overwrite)
    check_device(device)
    excluded = set(parse_types(exclude_types, "--exclude-types"))
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
        model=model.config(),
    )
    out_dir = writable_folder(
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
