"""`LazyGroup`: a Click group whose subcommands are imported only when one of them runs.

Click's documented lazy-loading pattern (https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands),
plus a short help line given with each import path, so that `--help` lists every subcommand without
importing any of them (and so without importing torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click


class LazyGroup(click.Group):
    """A group whose `lazy_subcommands` map a name to `("package.module:command", "short help")`.

    The module is imported when the subcommand is looked up to run (or to print its own `--help`); the
    group's `--help` prints the short help given here instead. A test imports every lazy subcommand and
    compares its own short help, so the two cannot drift apart.
    """

    def __init__(
        self, *args: object, lazy_subcommands: Mapping[str, tuple[str, str]] | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands and cmd_name not in self.commands:
            self.add_command(load_command(self.lazy_subcommands[cmd_name][0]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands table of `--help`, with the short help of lazy commands taken from the map."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_subcommands and name not in self.commands:
                rows.append((name, self.lazy_subcommands[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(path: str) -> click.Command:
    """The Click command at `"package.module:attribute"`."""
    module_name, _, attribute = path.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{path} is not a Click command")
    return command
