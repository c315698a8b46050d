"""Checkpoints: tensors-only files (loadable with `weights_only=True`) plus JSON config, written atomically."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch


def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the process's umask (0o644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class _Writer(io.BufferedWriter):
    """A file that remembers the first exception its writes raised: `torch.save` reports a failed write
    (a full disk) or a stop signal met mid-write (`ForcedStop`) as a `RuntimeError` of its zip writer,
    and this tells what really happened."""

    error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise


def atomic_write_bytes(path: Path, write: Any, sync: bool = True) -> None:
    """Call `write(file_object)` on a temp file in the same folder, then rename it over `path`.

    The file gets the permissions a plain `open()` would give it (`file_mode`), not the temp file's 0o600.
    `sync=False` skips the fsync, for files that can be remade (caches): atomic, but not durable.
    A failed write (a full disk, a folder gone read-only or away) is an `OSError` naming `path`, whatever
    the writer made of it, and a `KeyboardInterrupt` met inside a write is raised as itself; either way
    `path` stays as it was and no temporary file is left.
    """
    path = Path(path)
    tmp: str | None = None
    fh: _Writer | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with _Writer(io.FileIO(fd, "wb")) as fh:
            write(fh)
            fh.flush()
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), file_mode())
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _cause(exc, fh.error if fh is not None else None)
        if isinstance(cause, KeyboardInterrupt) and cause is not exc:
            raise cause from None  # a second Ctrl-C mid-write: the stop, not the zip writer's complaint
        if not isinstance(cause, OSError):
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from exc


def _cause(exc: BaseException, recorded: BaseException | None) -> BaseException | None:
    """What made a write fail: the `OSError` itself, what the file recorded, or an `OSError` or a stop
    (`KeyboardInterrupt`) that the writer's own error was raised while handling."""
    if isinstance(exc, OSError):
        return exc
    if recorded is not None:
        return recorded
    seen = exc.__context__
    while seen is not None and not isinstance(seen, OSError | KeyboardInterrupt):
        seen = seen.__context__
    return seen


def atomic_write_text(path: Path, text: str) -> None:
    """`text` (UTF-8) into `path` atomically: a reader sees the old file or the new one, never a part."""
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Save a dict of tensors / numbers / strings atomically with `torch.save`."""
    path = Path(path)
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))
    return path


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by `save_state` without unpickling arbitrary classes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which
        raise ValueError(damaged(path, exc, "metalearn checkpoint")) from None


def damaged(path: str | Path, exc: BaseException, kind: str = "checkpoint") -> str:
    """Why `torch.load` could not read `path`, in one line that names the file and says it is damaged:
    a truncated file surfaces as anything from a zip error to `OSError: [Errno 22]`, which says neither."""
    detail = str(exc).split(". ")[0].splitlines()[0] if str(exc) else ""
    detail = detail.replace("PytorchStreamReader failed reading zip archive: ", "")
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    try:
        size = f"{Path(path).stat().st_size} bytes, "
    except OSError:
        size = ""
    return f"{path}: damaged or truncated {kind}, not a whole PyTorch file ({size}{detail or type(exc).__name__})"


def first_nonfinite(state: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor in `state` (nested mappings too) holding a NaN or an
    infinity, else None: what a diverged run leaves must never be saved or loaded silently. One host sync."""
    named = list(_float_tensors(state))
    if not named:
        return None
    device = named[0][1].device
    finite = torch.stack([torch.isfinite(t).all().to(device) for _, t in named])
    if bool(finite.all()):
        return None
    return named[int(torch.nonzero(~finite)[0])][0]


def _float_tensors(state: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    for name, value in state.items():
        if isinstance(value, Mapping):
            yield from _float_tensors(value, f"{prefix}{name}.")
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            yield f"{prefix}{name}", value


def save_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically (indented, keys sorted) so configs diff cleanly."""
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
