"""A run folder belongs to one run: ownership, a lock, and logs that match the checkpoint.

A run folder (``train --out RUN_DIR``) holds one training run: ``last.pt`` (+ ``best.pt``),
``log.jsonl`` and ``log.csv``. :class:`RunFolder` guards it:

* **Ownership.** Starting into a folder that holds a run is refused unless ``resume`` (continue
  it) or ``overwrite`` (start a new one). ``overwrite`` moves the previous run's files into
  ``RUN_DIR/previous/`` and deletes them only when the new run has written its first
  checkpoint, so a new run that fails early loses nothing.
* **One run at a time.** ``RUN_DIR/run.lock`` names the process training there (PID, host,
  start time); a second run is refused with that PID. A lock whose process has ended without
  removing it (``kill -9``, a power cut) is taken over with a message.
* **Resume.** The logs are cut back to the checkpoint's step: the steps a killed run logged
  after its last checkpoint are trained again and must not appear twice. Temporary files of a
  save that was killed are removed. A missing or unreadable ``last.pt`` is an error naming the
  newest readable checkpoint (``best.pt``, ``previous/last.pt``, ...), never a silent start at
  step 1; only a folder with no trace of a run starts fresh under ``resume``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

from hfl_lite.atomic import atomic_file, process_alive
from hfl_lite.errors import UserError

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["BACKUP_DIR", "LOCK_NAME", "RUN_FILES", "RunFolder", "RunFolderError", "check_run_folder",
           "truncate_logs"]

RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "log.csv")
LOCK_NAME = "run.lock"
BACKUP_DIR = "previous"


class RunFolderError(UserError):
    """The run folder is in use, holds another run, or has nothing to resume."""


# ------------------------------------------------------------------------------ the lock
def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux clock ticks since boot), to tell it from a later process
    that reuses the id; None where ``/proc`` is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file: ``{}`` when unreadable, None when there is none."""
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder_alive(info: dict[str, Any]) -> bool:
    """Whether the process named by a lock still runs; one on another host is assumed to."""
    pid = info.get("pid")
    if not isinstance(pid, int):
        return False
    if info.get("host") != socket.gethostname():
        return True
    started = info.get("process_start")
    return process_alive(pid) and (started is None or _process_start(pid) in (None, started))


def _describe_holder(info: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if "started" in info else "?"
    return f"PID {info.get('pid')} on {info.get('host')}, since {since}"


def _in_use(folder: Path, info: dict[str, Any]) -> RunFolderError:
    return RunFolderError(f"{folder} is in use by another training run ({_describe_holder(info)}): wait for it to "
                          f"end or stop it, or choose another --out (the lock file {folder / LOCK_NAME} names it; "
                          "if that process is gone on another host, delete the file)")


def _live_holder(folder: Path) -> dict[str, Any] | None:
    """The live process holding ``folder``'s lock, other than this one (None: free or stale)."""
    info = _read_lock(folder / LOCK_NAME)
    if info is None or (info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()):
        return None
    return info if _holder_alive(info) else None


# ------------------------------------------------------------------------------ what a folder holds
def _run_files(folder: Path) -> list[str]:
    """Names of a run's files in ``folder``, including temporary files of an unfinished save."""
    names = [name for name in RUN_FILES if (folder / name).exists()]
    return names + sorted(p.name for p in folder.glob(".*.tmp"))


def _readable_step(path: Path) -> int | None:
    try:
        return int(load_checkpoint(path).get("step", -1))
    except CheckpointError:
        return None


def _newest_readable(folder: Path) -> tuple[Path, int] | None:
    """The readable checkpoint of ``folder`` (and of ``folder/previous``) with the highest step."""
    candidates = [p for d in (folder, folder / BACKUP_DIR) if d.is_dir() for p in sorted(d.glob("*.pt"))]
    steps = [(p, s) for p in candidates if (s := _readable_step(p)) is not None]
    return max(steps, key=lambda ps: ps[1]) if steps else None


def _nothing_to_resume(folder: Path, problem: str) -> RunFolderError:
    newest = _newest_readable(folder)
    if newest is None:
        offer = "no readable checkpoint is left: pass --overwrite to start over"
    else:
        offer = (f"the newest readable checkpoint is {newest[0]} (step {newest[1]}): copy it to {folder / 'last.pt'} "
                 "to resume from it, or pass --overwrite to start over")
    return RunFolderError(f"--resume: {problem}; {offer}")


def check_run_folder(folder: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work, what :meth:`RunFolder.claim` would refuse (it reads, writes nothing).

    Raises :class:`RunFolderError`: ``resume`` with ``overwrite``; ``folder`` is a file; another
    live run holds the lock; the folder holds a run and neither flag is given; ``resume`` finds
    traces of a run but no ``last.pt``.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                             "--overwrite starts a new one there")
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out {folder} is a file, not a run folder")
    if not folder.is_dir():
        return
    holder = _live_holder(folder)
    if holder is not None:
        raise _in_use(folder, holder)
    found = _run_files(folder)
    if found and not (resume or overwrite):
        raise RunFolderError(f"{folder} holds a run ({', '.join(found)}): pass --resume to continue it, or "
                             f"--overwrite to start a new one (the previous run's files are kept in "
                             f"{folder / BACKUP_DIR} until the new run's first checkpoint), or choose another --out")
    if resume and found and not (folder / "last.pt").exists():
        raise _nothing_to_resume(folder, f"{folder / 'last.pt'} is missing (the run stopped before a checkpoint "
                                         f"was complete; found {', '.join(found)})")


# ------------------------------------------------------------------------------ logs
def truncate_logs(folder: str | os.PathLike, step: int) -> int:
    """Cut ``log.jsonl`` and ``log.csv`` back to ``step``: drop records of later steps and a last
    line torn by a kill. Each file is rewritten atomically, only when something goes. Returns the
    number of records dropped."""
    folder = Path(folder)
    dropped = 0
    jsonl = folder / "log.jsonl"
    if jsonl.is_file():
        lines = jsonl.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            at = record.get("step") if isinstance(record, dict) else None
            if not isinstance(at, (int, float)) or at <= step:
                kept.append(line)
        if len(kept) != len(lines):
            dropped += len(lines) - len(kept)
            with atomic_file(jsonl, "w") as f:
                f.write("".join(line + "\n" for line in kept))
    table = folder / "log.csv"
    if table.is_file():
        rows = list(csv.reader(io.StringIO(table.read_text(encoding="utf-8"), newline="")))
        if rows:
            header, body = rows[0], rows[1:]
            at = header.index("step") if "step" in header else None
            kept_rows = [r for r in body if len(r) == len(header) and at is not None and r[at].isdigit()
                         and int(r[at]) <= step]
            if len(kept_rows) != len(body):
                dropped += len(body) - len(kept_rows)
                with atomic_file(table, "w") as f:
                    csv.writer(f).writerows([header, *kept_rows])
    return dropped


# ------------------------------------------------------------------------------ the claim
class RunFolder:
    """One run's hold on its folder (see the module docstring); a context manager.

    ``claim()`` takes the lock and applies the ownership rules; ``checkpoint_written()`` (after
    each ``last.pt``) deletes an ``--overwrite`` backup once; ``release()`` removes the lock.
    ``log``: where the messages go (a stale lock taken over, files set aside).
    """

    def __init__(self, folder: str | os.PathLike, resume: bool = False, overwrite: bool = False,
                 log: Callable[[str], None] = print):
        self.folder = Path(folder)
        self.resume = resume
        self.overwrite = overwrite
        self.log = log
        self.held = False
        self._backup: Path | None = None

    @property
    def lock_path(self) -> Path:
        return self.folder / LOCK_NAME

    def __enter__(self) -> "RunFolder":
        self.claim()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def claim(self) -> None:
        """Lock the folder and check or prepare it; raises :class:`RunFolderError`."""
        if self.resume and self.overwrite:
            check_run_folder(self.folder, self.resume, self.overwrite)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            check_run_folder(self.folder, self.resume, self.overwrite)  # under the lock: nobody changes it now
            for tmp in self.folder.glob(".*.tmp"):  # left by a save that was killed; no writer holds them now
                tmp.unlink()
                self.log(f"[hfl_lite] removed {tmp}, left by a checkpoint save that did not finish")
            if self.overwrite:
                self._set_aside()
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "process_start": _process_start(os.getpid())}
        staged = self.folder / f".{LOCK_NAME}.{os.getpid()}"
        staged.write_text(json.dumps(mine))
        try:
            for _ in range(3):
                if self._create_lock(staged):
                    self.held = True
                    return
                info = _read_lock(self.lock_path)
                if info is None:
                    continue  # released meanwhile
                if _holder_alive(info):
                    raise _in_use(self.folder, info)
                # stale: set it aside, and make sure what was set aside is the lock judged stale
                aside = self.folder / f".{LOCK_NAME}.stale.{os.getpid()}"
                try:
                    os.replace(self.lock_path, aside)
                except FileNotFoundError:
                    continue
                taken = _read_lock(aside) or {}
                if taken.get("pid") != info.get("pid") or taken.get("started") != info.get("started"):
                    os.replace(aside, self.lock_path)  # another process got there first: its lock goes back
                    continue
                aside.unlink()
                self.log(f"[hfl_lite] {self.folder}: taking over the lock of {_describe_holder(info)}, which no "
                         "longer runs (it was killed or crashed)")
            raise RunFolderError(f"{self.folder}: could not take the lock {self.lock_path}; another run is starting "
                                 "there")
        finally:
            staged.unlink(missing_ok=True)

    def _create_lock(self, staged: Path) -> bool:
        """Create the lock file with the content of ``staged``; False when a lock exists."""
        try:
            os.link(staged, self.lock_path)  # the lock appears with its content, or not at all
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create the file exclusively, then fill it
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(staged.read_text())
            return True

    def _set_aside(self) -> None:
        """``overwrite``: move the previous run's files into ``previous/`` (kept until the first checkpoint)."""
        found = [n for n in RUN_FILES if (self.folder / n).exists()]
        backup = self.folder / BACKUP_DIR
        if not found:
            return
        if backup.exists() and not (self.folder / "last.pt").exists():
            # an earlier --overwrite run ended before its first checkpoint: previous/ still holds
            # the last complete run, and what lies here now has no checkpoint worth keeping
            for name in found:
                (self.folder / name).unlink()
        else:
            if backup.exists():
                shutil.rmtree(backup)
            backup.mkdir()
            for name in found:
                os.replace(self.folder / name, backup / name)
        self._backup = backup
        self.log(f"[hfl_lite] --overwrite: the previous run's files are in {backup} until this run writes its "
                 "first checkpoint")

    def checkpoint_written(self) -> None:
        """Call after each ``last.pt``: the first one makes the ``--overwrite`` backup redundant."""
        if self._backup is not None:
            shutil.rmtree(self._backup, ignore_errors=True)
            self._backup = None

    def resume_checkpoint(self, map_location="cpu") -> dict[str, Any] | None:
        """With ``resume``: ``last.pt`` loaded, or None for a folder with no run yet; raises
        :class:`RunFolderError` naming the newest readable checkpoint when ``last.pt`` is
        unreadable. Without ``resume``: None."""
        last = self.folder / "last.pt"
        if not self.resume or not last.exists():
            return None
        try:
            return load_checkpoint(last, map_location=map_location)
        except CheckpointError as err:
            raise _nothing_to_resume(self.folder, str(err)) from None

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            info = _read_lock(self.lock_path) or {}
            if info.get("pid") == os.getpid():
                self.lock_path.unlink(missing_ok=True)
            self.held = False
