"""The `metalearn` command: core commands plus every application registered under `metalearn.applications`.

Nothing heavy is imported to print help: core commands are `LazyGroup` entries, and an application's
group (its entry point) must itself import no torch until one of its commands runs
(tests/core/test_cli_imports.py checks both).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from metalearn.cli.lazy import LazyGroup, load_command

ENTRY_POINT_GROUP = "metalearn.applications"

__all__ = ["ENTRY_POINT_GROUP", "ApplicationGroup", "LazyGroup", "load_command", "main"]


class ApplicationGroup(LazyGroup):
    """A lazy group that also adds the application command groups found through entry points, on first use."""

    def _applications(self) -> dict[str, EntryPoint]:
        """Application name -> its entry point (loaded only when the command is used or listed)."""
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._applications()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        ep = self._applications().get(cmd_name)
        return ep.load() if ep is not None else None


@click.group(
    cls=ApplicationGroup,
    lazy_subcommands={
        "algorithms": (
            "metalearn.cli.algorithms:list_algorithms",
            "List the registered algorithms: name, class and hyper-parameters (an alias names its algorithm).",
        ),
    },
)
@click.version_option(package_name="metalearn")
def main() -> None:
    """metalearn: meta-learning algorithms behind one trainer, and their applications."""


if __name__ == "__main__":
    main()
