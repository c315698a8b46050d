"""`metalearn fewshot train`: meta-train a few-shot learner into a run folder."""

from __future__ import annotations

import click

from metalearn.cli.errors import check_device, friendly_errors
from metalearn.cli.torchrun import torchrun_command
from metalearn_fewshot.cli.options import BATCHNORM, DATASETS


@click.command()
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="glyphs",
    show_default=True,
    help="glyphs: the embedded default, no download.",
)
@click.option("--root", type=click.Path(file_okay=False), help="The folder that holds the dataset.")
@click.option(
    "--algorithm", required=True, help="Any name of `metalearn algorithms` (protonet, maml, anil ...)."
)
@click.option(
    "--ways", type=click.IntRange(min=2), default=5, show_default=True, help="N of the test episodes."
)
@click.option(
    "--shots", type=click.IntRange(min=1), default=1, show_default=True, help="K of the test episodes."
)
@click.option("--query", type=click.IntRange(min=1), default=15, show_default=True, help="Queries per class.")
@click.option(
    "--train-ways", type=click.IntRange(min=2), help="N of the training episodes [default: --ways]."
)
@click.option(
    "--train-shots", type=click.IntRange(min=1), help="K of the training episodes [default: --shots]."
)
@click.option(
    "--train-query", type=click.IntRange(min=1), help="Training queries per class [default: --query]."
)
@click.option(
    "--iterations", type=click.IntRange(min=1), required=True, help="Outer iterations (meta-batches)."
)
@click.option("--tasks-per-batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--outer-lr", type=float, default=1e-3, show_default=True)
@click.option("--inner-lr", type=float, help="The algorithm's inner rate [default: the algorithm's].")
@click.option(
    "--inner-steps", type=click.IntRange(min=0), help="Inner steps in training [default: the algorithm's]."
)
@click.option(
    "--test-inner-steps",
    type=click.IntRange(min=0),
    help="Inner steps `evaluate` takes [default: --inner-steps].",
)
@click.option(
    "--first-order/--second-order", default=None, help="Drop second-order terms (MAML, ANIL, Meta-SGD)."
)
@click.option("--image-size", type=click.IntRange(min=8), help="[default: the dataset's: 28, 84 or 32]")
@click.option(
    "--rotations",
    type=click.Choice(["1", "2", "4"]),
    help="Training classes x rotations [default: the dataset's].",
)
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Conv-4 filters.")
@click.option("--batchnorm", type=click.Choice(BATCHNORM), default="transductive", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="The run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@torchrun_command
@friendly_errors
def train(
    dataset: str,
    root: str | None,
    algorithm: str,
    ways: int,
    shots: int,
    query: int,
    train_ways: int | None,
    train_shots: int | None,
    train_query: int | None,
    iterations: int,
    tasks_per_batch: int,
    outer_lr: float,
    inner_lr: float | None,
    inner_steps: int | None,
    test_inner_steps: int | None,
    first_order: bool | None,
    image_size: int | None,
    rotations: str | None,
    hidden: int,
    batchnorm: str,
    seed: int,
    device: str,
    out: str,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> None:
    """Meta-train a few-shot learner on a dataset's training classes (resumable, torchrun-ready)."""
    from metalearn.runs import check_run_mode
    from metalearn_fewshot.training import FewshotConfig, passes_per_iteration, train_run

    check_run_mode(resume, overwrite)
    check_device(device)
    config = FewshotConfig(
        algorithm=algorithm,
        dataset=dataset,
        root=root,
        ways=ways,
        shots=shots,
        query=query,
        train_ways=train_ways,
        train_shots=train_shots,
        train_query=train_query,
        iterations=iterations,
        tasks_per_batch=tasks_per_batch,
        outer_lr=outer_lr,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        first_order=first_order,
        test_inner_steps=test_inner_steps,
        image_size=image_size,
        rotations=int(rotations) if rotations else None,
        hidden=hidden,
        batchnorm=batchnorm,  # type: ignore[arg-type]
        seed=seed,
        device=device,
    )
    train_run(config, out, resume=resume, overwrite=overwrite, progress=progress)
    passes = iterations * passes_per_iteration(config)
    click.echo(f"trained {config.algorithm} for {iterations} iterations ({passes} image passes) into {out}")
