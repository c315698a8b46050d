"""Output files and folders: checked writable before any work, written atomically after it."""

from __future__ import annotations

from pathlib import Path

import click

from metalearn.cli.files import writable_file, writable_folder
from metalearn_iqa.cli.errors import CLIError
from metalearn_iqa.images.decode import image_files, other_files

__all__ = ["collect_images", "resolve_checkpoint", "writable_file", "writable_folder", "write_output"]


def write_output(path: Path, text: str) -> None:
    """Write a result file after the work: atomically, re-creating its folder should it have gone since
    `writable_file` checked it, so a finished computation is not lost to a missing folder."""
    from metalearn.checkpoint import atomic_write_text

    atomic_write_text(path, text)


def resolve_checkpoint(checkpoint: str | None) -> Path:
    """The model file to use: --checkpoint, else the newest prior under the default output folder."""
    from metalearn_iqa.cli.paths import default_output_dir, newest_prior

    if checkpoint:
        return Path(checkpoint)
    found = newest_prior()
    if found is None:
        raise CLIError(
            f"no prior found under {default_output_dir()}/: run `metalearn iqa demo` or `metalearn iqa train` "
            "first, or pass --checkpoint PATH"
        )
    return found


def collect_images(inputs: tuple[str, ...]) -> list[Path]:
    """The images named on the command line, folders searched recursively (sorted), in input order."""
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images.extend(image_files(path))
            _report_skipped(path)
        elif path.is_file():
            images.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    if not images:
        raise CLIError(f"no image files (in a format Pillow reads) in {', '.join(inputs)}")
    return images


def _report_skipped(folder: Path) -> None:
    """Say which files of a searched folder are not read (not an image format Pillow decodes)."""
    skipped = other_files(folder)
    if skipped:
        shown = ", ".join(str(p.relative_to(folder)) for p in skipped[:3]) + (
            " ..." if len(skipped) > 3 else ""
        )
        click.echo(
            f"note: {folder}: {len(skipped)} file(s) not read, not in an image format: {shown}", err=True
        )
