"""Output files and folders: checked writable before any work, written atomically after it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from metalearn.distributed import on_main
from metalearn_iqa.cli.errors import CLIError
from metalearn_iqa.images.decode import IMAGE_SUFFIXES, image_files


def writable_folder(path: Path, option: str) -> Path:
    """Create `path` if needed and check a file can be written in it, before any work starts."""
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


def write_output(path: Path, text: str) -> None:
    """Write a result file after the work: atomically, re-creating its folder should it have gone since
    `writable_file` checked it, so a finished computation is not lost to a missing folder."""
    from metalearn.checkpoint import atomic_write_text

    atomic_write_text(path, text)


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
        elif path.is_file():
            images.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    if not images:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(inputs)}")
    return images
