"""A run's output folder: checked before any work, one run at a time, nothing left behind by a failed start.

:func:`check_output_dir` refuses a path that is a file or that cannot be written (a real write probe, so it also
holds for root and for read-only mounts). :class:`RunFolder` is entered by every command-line twin around its run:

* it takes an exclusive lock (``output_dir/.dino_lib.lock``, an ``flock`` on a file holding host, pid, start time
  and command line); a second run on the same folder stops with a message naming the first. A lock left by a
  process that died is free again (the kernel drops ``flock`` locks with the process) and is taken over with a
  warning naming the dead run;
* it removes stale temporary files of interrupted atomic writes (``.<name>.<random>.tmp``, e.g. a checkpoint
  being written during a ``kill -9``), which no live process can own while the lock is held;
* until the run marks itself started (:func:`mark_started`; :func:`dino_lib.config.save_run_config` does it when
  it records ``config.yaml``), a failure removes every entry the run created, and the folder itself when the run
  created it: a run that fails on its inputs leaves the folder as it found it. Outputs written after the start
  stay (a training run resumes from them).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from dino_lib.utils.errors import ConfigError

__all__ = ["LOCK_NAME", "OutputDirError", "RunFolder", "check_output_dir", "mark_started", "remove_stale_temp_files"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".dino_lib.lock"
_ACTIVE: list[RunFolder] = []


class OutputDirError(ConfigError):
    """The output folder cannot be used (a file, not writable, or in use by another run)."""


def _error(key: str, message: str) -> OutputDirError:
    err = OutputDirError(f"{key}: {message}")
    err.key = key
    return err


def check_output_dir(path: str | Path, key: str = "output_dir") -> Path:
    """``path`` as a Path after checking that it is (or can become) a writable folder; nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise _error(key, f"{path} is a file, not a folder; choose another {key} or move the file away")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise _error(key, f"{path} cannot be created: {existing} is a file, not a folder; choose another {key}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dino_lib-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = "" if existing == path else f" (its nearest existing parent {existing})"
        raise _error(
            key, f"{path}{where} is not writable ({err.strerror}); choose a folder you can write to, e.g. runs/<name>"
        ) from None
    return path


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete ``.<name>.<random>.tmp`` files of interrupted atomic writes in ``folder`` and its sub-folders
    (one level). Only call it while holding the folder's lock."""
    removed = []
    candidates = list(folder.glob(".*.tmp")) + list(folder.glob("*/.*.tmp"))
    for path in candidates:
        if path.is_file() and path.name.count(".") >= 3:
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                removed.append(path)
                logger.warning("removed %s (%.1f MB) left by an interrupted write", path, size / 2**20)
    return removed


def mark_started(path: str | Path) -> None:
    """Say that the run writing into ``path`` has started its real work: its outputs are kept from now on."""
    target = Path(path).resolve()
    for folder in _ACTIVE:
        if folder.resolved == target:
            folder.started = True


class RunFolder:
    """Context manager guarding one run's output folder (see the module docstring).

    Args:
        path: the output folder.
        lock: take the folder's lock (``False`` for the non-zero ranks of a multi-process run, whose rank 0
            holds it).
        key: the config key named in messages.
    """

    def __init__(self, path: str | Path, *, lock: bool = True, key: str = "output_dir") -> None:
        self.path, self.lock, self.key = Path(path), lock, key
        self.started = False
        self._fd: int | None = None
        self._created: Path | None = None
        self._before: set[str] = set()

    @property
    def resolved(self) -> Path:
        return self.path.resolve()

    def __enter__(self) -> RunFolder:
        check_output_dir(self.path, self.key)
        top = self.path
        while not top.parent.exists():
            top = top.parent
        self._created = None if self.path.exists() else top
        self._before = {p.name for p in self.path.iterdir()} if self.path.exists() else set()
        if not self.lock:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        remove_stale_temp_files(self.path)
        _ACTIVE.append(self)
        return self

    def _acquire(self) -> None:
        lock_path = self.path / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)  # nothing else to undo: the folder and everything in it belong to the running run
            raise _error(
                self.key,
                f"{self.path} is in use by another run ({holder.replace(chr(10), ', ')}); wait for it to finish, "
                f"stop it, or choose another {self.key} (lock file {lock_path})",
            ) from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous:
            logger.warning(
                "%s: taking over the lock of a run that is no longer running (%s)",
                self.path,
                previous.replace("\n", ", "),
            )
        info = (
            f"host={socket.gethostname()}\npid={os.getpid()}\n"
            f"started={time.strftime('%Y-%m-%d %H:%M:%S')}\ncommand={shlex.join(sys.argv)}\n"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._cleanup(failed=exc_type is not None and not self.started)

    def _cleanup(self, failed: bool) -> None:
        if not self.lock:  # a non-zero rank: the folder belongs to rank 0, which cleans up after a failed start
            return
        if self._fd is not None:
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
            os.close(self._fd)
            self._fd = None
        if not failed or not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.name in self._before or entry.name == LOCK_NAME:
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        if self._created is not None:
            folder = self.path
            while True:  # remove the folders this run created, innermost first, while empty
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == self._created:
                    break
                folder = folder.parent
