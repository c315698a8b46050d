"""`metalearn fewshot evaluate`: a run's accuracy over test episodes, with its 95 % interval."""

from __future__ import annotations

import click

from metalearn.cli.errors import check_device, friendly_errors
from metalearn_fewshot.cli.options import BATCHNORM


@click.command()
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    help="A folder `metalearn fewshot train` wrote.",
)
@click.option("--split", default="test", show_default=True, help="test, val or train (the dataset's names).")
@click.option("--episodes", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--ways", type=click.IntRange(min=2), help="[default: the run's --ways]")
@click.option("--shots", type=click.IntRange(min=1), help="[default: the run's --shots]")
@click.option("--query", type=click.IntRange(min=1), help="Queries per class [default: the run's --query].")
@click.option(
    "--inner-steps",
    type=click.IntRange(min=0),
    help="Test-time inner steps [default: the run's --test-inner-steps].",
)
@click.option("--batchnorm", type=click.Choice(BATCHNORM), help="[default: the run's]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the episodes.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the result as JSON.")
@friendly_errors
def evaluate(
    run_dir: str,
    split: str,
    episodes: int,
    ways: int | None,
    shots: int | None,
    query: int | None,
    inner_steps: int | None,
    batchnorm: str | None,
    seed: int,
    device: str,
    json_path: str | None,
) -> None:
    """Accuracy of a trained run over test episodes, with its 95 % confidence interval."""
    from metalearn_fewshot.evaluation import evaluate_run

    check_device(device)
    result = evaluate_run(
        run_dir,
        split=split,
        episodes=episodes,
        ways=ways,
        shots=shots,
        queries=query,
        steps=inner_steps,
        batchnorm=batchnorm,
        seed=seed,
        device=device,
        json_path=json_path,
    )
    click.echo(
        f"accuracy {result['accuracy']:.4f} ± {result['ci95']:.4f} (95 % CI, {result['episodes']} episodes)"
    )
