"""`metalearn fewshot demo`: ProtoNets, MAML and the baseline on the embedded glyphs, side by side."""

from __future__ import annotations

import click

from metalearn.cli.errors import friendly_errors


@click.command()
@click.option(
    "--iterations", type=click.IntRange(min=1), help="Outer iterations per method [default: the demo's]."
)
@click.option("--episodes", type=click.IntRange(min=2), help="Test episodes [default: 600].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@friendly_errors
def demo(iterations: int | None, episodes: int | None, seed: int, json_path: str | None) -> None:
    """On the embedded glyphs: ProtoNets, MAML and a pre-train-then-fine-tune baseline at equal compute."""
    import dataclasses
    from pathlib import Path

    from metalearn.checkpoint import save_json
    from metalearn_fewshot.demo import DemoConfig, format_report, run_demo

    config = DemoConfig(seed=seed)
    changes = {k: v for k, v in {"iterations": iterations, "episodes": episodes}.items() if v is not None}
    config = dataclasses.replace(config, **changes)
    report = run_demo(config, log=click.echo)
    click.echo(format_report(report))
    if json_path:
        save_json(report, Path(json_path))
