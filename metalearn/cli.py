"""The `metalearn` command: core commands plus every application registered under `metalearn.applications`."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from metalearn.algorithms import ALGORITHMS, hyper_parameter_names

ENTRY_POINT_GROUP = "metalearn.applications"


class ApplicationGroup(click.Group):
    """A Click group that adds application command groups found through entry points, on first use."""

    def _applications(self) -> dict[str, EntryPoint]:
        """Application name -> its entry point (loaded only when the command is used)."""
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._applications()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        ep = self._applications().get(name)
        return ep.load() if ep is not None else None


@click.group(cls=ApplicationGroup)
@click.version_option(package_name="metalearn")
def main() -> None:
    """metalearn: meta-learning algorithms behind one trainer, and their applications."""


@main.command("algorithms")
def list_algorithms() -> None:
    """List the registered algorithms: name, class and hyper-parameters (an alias names its algorithm)."""
    for name, cls in ALGORITHMS.items():
        if name != cls.name:
            click.echo(f"{name:16s} alias of {cls.name}")
            continue
        hyper = ", ".join(hyper_parameter_names(cls))
        click.echo(f"{name:16s} {cls.__module__}.{cls.__name__}({hyper})")


if __name__ == "__main__":
    main()
