"""Outputs that appear whole or not at all.

* :func:`atomic_file` writes one file through a temporary file in the same folder, flushed,
  ``fsync``-ed and renamed over the target (``os.replace`` is atomic on POSIX and Windows): a
  crash leaves the old file or the new one, never a torn one (checkpoints, rewritten logs).
* :func:`staged_folder` gives a command a temporary sibling of its output folder to write into
  and moves the result into place only when the command succeeds; on failure it removes it, so
  a failed ``eval``, ``infer`` or ``synth`` leaves no empty or half-written output folder. A
  folder left behind by a killed process is removed by the next command that writes there.
* :func:`check_output_folder` refuses an output path that cannot work (an existing file, a
  non-empty folder without ``--overwrite``, a folder that cannot be written) before any work.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from hfl_lite.errors import UserError

__all__ = ["atomic_file", "check_output_folder", "fsync_folder", "process_alive", "staged_folder"]

_STAGE = "partial"  # .<name>.partial-<pid>-<random>: a folder being written
_ASIDE = "replaced"  # .<name>.replaced-<pid>-<random>: the previous folder, removed right after the swap


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
_FILE_MODE = 0o666 & ~_UMASK  # what open() gives a new file (mkstemp gives 0o600)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Open ``path`` for writing through a temporary file that replaces it when the block ends.

    mode: ``"wb"`` or ``"w"`` (text: UTF-8, newlines as written). The folder is created when
    missing. If the block raises, the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_folder(path: str | os.PathLike, option: str = "--out", overwrite: bool | None = None) -> Path:
    """Refuse, before any work is done, an output folder that cannot be written as asked.

    Raises :class:`~hfl_lite.errors.UserError` naming ``option`` when ``path`` is an existing
    file, lies under one, cannot be written, or (``overwrite=False``) is a non-empty folder.
    ``overwrite=None``: a non-empty folder is fine (new files join it). Returns ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is an existing file, not a folder: name a folder (it is created when "
                        "missing)")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: no permission to write in {existing}")
    if overwrite is False and path.is_dir() and any(path.iterdir()):
        raise UserError(f"{option} {path} exists and is not empty: pass --overwrite to replace it (the old folder "
                        "is removed only once the new one is complete)")
    return path


def _remove_abandoned(target: Path) -> None:
    """Remove staging and set-aside folders of ``target`` whose process is gone (killed mid-write)."""
    for kind in (_STAGE, _ASIDE):
        for folder in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = folder.name.rsplit(f".{kind}-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _swap_in(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``, replacing a file or a folder there (a folder is set aside first
    and removed after the rename, so ``dest`` is never missing a complete version for long)."""
    if dest.is_dir() and not dest.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_ASIDE}-{os.getpid()}-", dir=dest.parent))
        aside.rmdir()
        os.rename(dest, aside)
        os.rename(src, dest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dest)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, replace: bool = False):
    """Write an output folder in a temporary sibling and move it into place on success.

    Yields the staging folder (``<parent>/.<name>.partial-<pid>-<random>``). When the block ends
    normally: a missing or empty ``target`` becomes the staging folder (one rename); an existing
    one is replaced whole (``replace=True``) or receives the staged entries one by one, each
    replacing an entry of the same name (``replace=False``: other files there are kept). When the
    block raises, the staging folder is removed and ``target`` is left as it was (not created).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is an existing file, not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_STAGE}-{os.getpid()}-", dir=target.parent))
    try:
        os.chmod(stage, 0o777 & ~_UMASK)  # mkdtemp makes it private; the result is an ordinary folder
        yield stage
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists() or replace:
            _swap_in(stage, target)
        else:
            for entry in sorted(stage.iterdir()):
                _swap_in(entry, target / entry.name)
            stage.rmdir()
        fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
