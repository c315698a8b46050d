"""`metalearn --help` and every application group's `--help` print without importing torch; the short help
lines a lazy group prints are the commands' own."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from metalearn.cli import ENTRY_POINT_GROUP, LazyGroup, load_command, main

PROBE = """
import sys
from metalearn.cli import main
try:
    main({argv!r}, prog_name="metalearn")
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "numpy", "learn2learn"))
print("HEAVY", heavy, "EXIT", code)
"""


def _heavy_imports(argv: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _application_groups() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


@pytest.mark.parametrize("argv", [["--help"], *[[app, "--help"] for app in _application_groups()]])
def test_help_imports_no_torch(argv: list[str]) -> None:
    assert _heavy_imports(argv) == "HEAVY [] EXIT 0"


def test_the_probe_sees_torch_when_a_command_needs_it() -> None:
    """The probe would notice a heavy import: a command that uses the registry does import torch."""
    assert "'torch'" in _heavy_imports(["algorithms"])


def _lazy_groups() -> list[tuple[str, LazyGroup]]:
    groups: list[tuple[str, LazyGroup]] = [("metalearn", main)]
    ctx = click.Context(main)
    for name in _application_groups():
        group = main.get_command(ctx, name)
        if isinstance(group, LazyGroup):
            groups.append((name, group))
    return groups


@pytest.mark.parametrize("group_name, group", _lazy_groups())
def test_lazy_short_help_is_the_commands_own(group_name: str, group: LazyGroup) -> None:
    assert group.lazy_subcommands, group_name
    for name, (path, short_help) in group.lazy_subcommands.items():
        command = load_command(path)
        assert command.get_short_help_str(limit=1000) == short_help, (group_name, name)
