"""`LazyGroup`: a Click group whose subcommands are imported only when one of them runs.

Click's documented lazy-loading pattern (https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands),
plus a short help line given with each import path, so that `--help` lists every subcommand without
importing any of them (and so without importing torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NoReturn

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

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            one_line_usage_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's bad option or argument
            one_line_usage_error(exc)

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


class OneLineUsageError(click.ClickException):
    """A bad option, argument or command as one `Error: ...` line, exit code 2 (Click prints the usage
    and a hint too): every refusal of the CLI is one line naming the option and the problem."""

    exit_code = 2


def one_line_usage_error(exc: click.UsageError) -> NoReturn:
    """Re-raise Click's usage error as one line naming the command, the option and the problem."""
    where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
    help_hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    raise OneLineUsageError(f"{where}{exc.format_message()}{help_hint}") from None


def load_command(path: str) -> click.Command:
    """The Click command at `"package.module:attribute"`."""
    module_name, _, attribute = path.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{path} is not a Click command")
    return command
