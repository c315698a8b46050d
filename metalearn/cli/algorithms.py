"""`metalearn algorithms`: the registry, listed (imports the algorithms, so torch)."""

from __future__ import annotations

import click

from metalearn.algorithms import ALGORITHMS, hyper_parameter_names


@click.command("algorithms")
def list_algorithms() -> None:
    """List the registered algorithms: name, class and hyper-parameters (an alias names its algorithm)."""
    for name, cls in ALGORITHMS.items():
        if name != cls.name:
            click.echo(f"{name:16s} alias of {cls.name}")
            continue
        hyper = ", ".join(hyper_parameter_names(cls))
        click.echo(f"{name:16s} {cls.__module__}.{cls.__name__}({hyper})")
