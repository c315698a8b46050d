"""Run folders: one run per folder, locked while it trains, never silently replaced or mixed with another.

`open_run` is the protocol every run follows (the trainer, an application's run that wraps it, a CLI):
create the folder, lock it, refuse a previous run unless it is resumed or overwritten, then write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from metalearn.distributed import on_main

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked; `path` is the folder."""

    def __init__(self, message: str, path: str | Path) -> None:
        super().__init__(message)
        self.path = Path(path)


class RunExistsError(RunFolderError):
    """The folder holds a previous run (`entries`) and neither resuming nor overwriting it was asked for.

    `foreign`: some entries are not a run's, so overwriting was refused too.
    """

    def __init__(self, message: str, path: str | Path, entries: list[str], foreign: bool = False) -> None:
        super().__init__(message, path)
        self.entries = entries
        self.foreign = foreign


class RunLockedError(RunFolderError):
    """Another process is training in the folder."""


class ResumeMismatchError(RunFolderError):
    """A resumed run's settings or budget disagree with the checkpoint's."""


class RunModeError(ValueError):
    """Both resuming and overwriting a run were asked for."""


def check_run_mode(resume: bool, overwrite: bool) -> None:
    """`RunModeError` when `resume` and `overwrite` are both set (a CLI calls it before loading any data)."""
    if resume and overwrite:
        raise RunModeError("resume and overwrite exclude each other: continue the run or replace it")


@contextlib.contextmanager
def open_run(
    directory: str | Path,
    files: Collection[str] = (),
    folders: Collection[str] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Open `directory` for a run that writes `files` and `folders` into it; yield its path.

    The folder is created and locked until the block ends (`RunLockedError` while another process holds
    it; temporary files that killed writes left are deleted). A folder holding anything is refused
    (`RunExistsError`) unless `resume` continues the run in it or `overwrite` deletes the previous run's
    `files` and `folders` first; a file no run wrote is never deleted, and a folder where the run writes
    one of its `files` is refused at once. `resume` with `overwrite` is a `RunModeError`.

    Under `torchrun` every rank opens the run: rank 0 does the file work, the others share its outcome.
    """
    check_run_mode(resume, overwrite)
    path = Path(directory)
    with lock_run_dir(path):
        claim_run_dir(path, (*files, *folders), resume=resume, overwrite=overwrite, files=files)
        yield path


@contextlib.contextmanager
def lock_run_dir(directory: str | Path) -> Iterator[Path]:
    """Hold an exclusive `flock` on `<directory>/.lock` (creating the folder) until the block ends.

    `open_run` locks and claims a run's folder; lock a folder alone where it holds runs of its own (each
    opened by `open_run`), so that a second command on the same folder fails at once.

    The kernel drops the lock when its holder dies, so a killed run never blocks the next one; the
    temporary files its killed writes left in the folder are deleted once the lock is held. The lock
    file stays behind (deleting it would let a waiting process lock a file nobody else sees). Under
    `torchrun` every rank calls it: rank 0 takes the lock and the others share its outcome (see `on_main`).
    """
    directory = Path(directory)
    held: list[IO[str]] = []
    on_main(lambda: held.append(_acquire(directory)))
    try:
        yield directory
    finally:
        for fh in held:
            _release(fh)


def _acquire(directory: Path) -> IO[str]:
    """Open and lock `<directory>/.lock`, writing this process's id into it; RunLockedError if it is taken."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fh = path.open("a+")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(
                    f"{directory}: another run is using this folder (it holds {path})", directory
                ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")  # who holds it, for a person looking
        fh.flush()
        remove_stale_temps(directory)  # the folder is ours: temp files in it belong to killed writers
    except BaseException:
        fh.close()
        raise
    return fh


def _release(fh: IO[str]) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def run_entries(directory: str | Path) -> list[str]:
    """Names in `directory` that belong to a run: everything but lock files and folders holding only those."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name != LOCK_FILE and not (p.is_dir() and not p.is_symlink() and not run_entries(p))
    )


def claim_run_dir(
    directory: str | Path,
    own: Collection[str],
    resume: bool,
    overwrite: bool,
    files: Collection[str] = (),
) -> None:
    """Make sure a new run may write into `directory`; with `overwrite`, delete the previous run's files.

    `own` names the files and folders a run writes there. A folder that holds anything is refused unless
    the run resumes it or overwrites it; files not in `own` are never deleted (and refuse an overwrite).
    `files` names those the run writes as files: a folder in the place of one would fail a save hours in,
    or pass for a missing checkpoint on resume, so it is refused now. The caller holds `lock_run_dir`,
    which deleted the temporary files of killed writes. Under `torchrun` every rank calls it: rank 0
    decides and the others share its outcome.
    """
    on_main(_claim, Path(directory), own, resume, overwrite, files)


def _claim(
    directory: Path, own: Collection[str], resume: bool, overwrite: bool, files: Collection[str]
) -> None:
    _refuse(directory, own, resume, overwrite)
    for name in files:
        if (directory / name).is_dir():
            raise RunFolderError(
                f"{directory / name}: is a folder, where the run writes its {name}", directory
            )


def _refuse(directory: Path, own: Collection[str], resume: bool, overwrite: bool) -> None:
    """Refuse a previous run unless resumed or overwritten; delete it when overwritten."""
    entries = run_entries(directory)
    if resume or not entries:
        return
    if not overwrite:
        raise RunExistsError(
            f"{directory}: holds a previous run ({', '.join(entries)}); resume it or overwrite it",
            directory,
            entries,
        )
    foreign = [name for name in entries if name not in own and not _is_temp(name)]
    if foreign:
        raise RunExistsError(
            f"{directory}: holds files that no run wrote ({', '.join(foreign)}); not overwriting them, "
            "choose another folder",
            directory,
            foreign,
            foreign=True,
        )
    for name in entries:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_stale_temps(directory: str | Path) -> list[str]:
    """Delete the `.NAME.*.tmp` files that atomic writes killed mid-way left in `directory`; their names.

    Only call it while holding the folder's lock (`lock_run_dir`): a live run's temp files are in use.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(p.name for p in directory.iterdir() if _is_temp(p.name) and p.is_file())
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    return stale


def _is_temp(name: str) -> bool:
    """A half-written file an interrupted atomic write left behind (see `checkpoint.atomic_write_bytes`)."""
    return name.startswith(".") and name.endswith(".tmp")


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every key whose value differs (nested mappings as dotted keys)."""
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += settings_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs
