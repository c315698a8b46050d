"""Output files and folders of any command: checked writable before any work starts (one rule, one wording)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from metalearn.cli.errors import CLIError
from metalearn.distributed import on_main


def writable_folder(path: Path, option: str) -> Path:
    """Create `path` if needed and check a file can be written in it, before any work starts."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path}: cannot write a folder there (a file is in the way)")
    try:
        _probe_folder(path)
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot write a folder there ({_reason(exc, path)})") from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """Check the folder of an output file is writable (creating it) and that `path` is not a folder."""
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a folder, expected a file name")
    try:
        _probe_folder(path.parent)
    except OSError as exc:
        raise CLIError(
            f"{option} {path}: cannot write the file there ({_reason(exc, path.parent)})"
        ) from None
    return path


def _probe_folder(path: Path) -> None:
    on_main(_probe_here, path)  # under torchrun: rank 0's disk holds the outputs


def _probe_here(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
        pass


def _reason(exc: OSError, folder: Path) -> str:
    """Why a folder cannot be written, in words (a file where a folder should be is the common case)."""
    if isinstance(exc, FileExistsError | NotADirectoryError) or (folder.exists() and not folder.is_dir()):
        return "a file is in the way"
    return exc.strerror or exc.__class__.__name__
