"""Safe files: a reader never sees a half-written file, a second writer never interleaves.

Every file rnnlab writes goes to a temporary file in the same folder, is flushed
and fsynced, then renamed over the target (``os.replace`` is atomic on POSIX) and
the folder itself is fsynced, so the rename survives a power cut too (SQLite's
habit). A write that fails (disk full, read-only folder) removes its temporary
file and leaves the previous version of the target untouched; it is reported as
one :class:`RnnlabError` sentence that says so.

A folder that a command writes into is held with :class:`FolderLock`, an
exclusive OS lock (``flock``) that the kernel drops when the process ends, however
it ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rnnlab.errors import RnnlabError

LOCK_NAME = ".rnnlab.lock"
# What atomic_write_bytes leaves behind when killed between mkstemp and rename:
# ".<target name>.<8 random characters>.tmp".
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _default_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: str | os.PathLike, err: OSError) -> RnnlabError:
    """One sentence for a failed write: what happened and that nothing saved was lost."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return RnnlabError(f"No space left on device while writing {path}; nothing already "
                           "saved was damaged (the previous version of every file is intact); "
                           "free some space and rerun the same command to continue")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the file system is read-only" if err.errno == errno.EROFS else "permission denied"
        return RnnlabError(f"cannot write {path}: {why}; choose a folder you can write to "
                           "with --out")
    return RnnlabError(f"cannot write {path}: {err.strerror or err}")


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents); one that cannot be made is a user error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RnnlabError(f"cannot create the folder {path}: {err.strerror or err}") from err
    return path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp creates 0600 files; results are meant to be shared like any other file.
        os.chmod(tmp, _default_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def write_csv(path: str | os.PathLike, fieldnames: Sequence[str],
              rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a whole CSV file atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return atomic_write_text(path, buffer.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def append_csv_row(path: str | os.PathLike, fieldnames: Sequence[str],
                   row: Mapping[str, Any]) -> Path:
    """Append one row by rewriting the file atomically (small files only).

    Rewriting keeps the guarantee that a crash leaves either the old file or the
    new one, never a half-written row. Two processes appending to one file would
    each rewrite it from what they read, losing rows: the caller holds the
    folder's :class:`FolderLock`.
    """
    path = Path(path)
    rows: list[Mapping[str, Any]] = read_csv(path) if path.exists() else []
    rows.append(row)
    return write_csv(path, fieldnames, rows)


def clean_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a killed write left in ``folder`` (not in subfolders).

    Only names :func:`atomic_write_bytes` makes are touched. Call it while holding
    the folder's lock: another live writer's temporary file looks the same.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if _TEMPORARY.match(entry.name) and entry.is_file():
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            removed.append(entry)
    return removed


class FolderLock:
    """An exclusive lock on a folder that a command writes into.

    The lock is ``flock`` on ``<folder>/.rnnlab.lock``: the kernel holds it for the
    open file and drops it when the process exits or is killed, so there is no
    stale lock to clear by hand. The file also records who holds it (pid, host,
    command, start time), only to name the holder when a second process is refused.
    Use it as a context manager; a held folder raises :class:`RnnlabError`.
    """

    def __init__(self, folder: str | os.PathLike, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command or " ".join(["rnnlab", *sys.argv[1:]])
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> FolderLock:
        # The folder and each parent this lock's ensure_dir makes, deepest first, so a
        # refused command can remove all of them again (runs/ as well as runs/x/).
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        while True:
            # Inside the loop: a holder that created the folder and wrote nothing removes
            # it on release, possibly between our attempts.
            ensure_dir(self.folder)
            fd = self._lock_once()
            if fd is None:
                continue
            # The holder before us may have removed the file between our open and our
            # lock (release unlinks it): then we hold a lock nobody else can see. Retry.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        except OSError:  # a full disk must not hide the lock we hold; the holder stays unnamed
            pass
        self._fd = fd
        return self

    def _lock_once(self) -> int | None:
        """The locked file's descriptor; ``None`` when the folder vanished meanwhile."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _default_mode())
        except FileNotFoundError:
            return None
        except OSError as err:
            raise write_error(self.folder, err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RnnlabError(f"{self.folder} is in use by another rnnlab process ({holder}); "
                              "wait for it to finish or choose another --out") from None
        except OSError as err:
            os.close(fd)
            raise RnnlabError(f"cannot lock {self.folder}: {err.strerror or err}") from err
        return fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (closing the file drops the flock).

        A process killed before this leaves the file, with no lock on it: harmless."""
        if self._fd is not None:
            try:
                self.path.unlink()
                for folder in self._created:  # a command refused before writing leaves
                    folder.rmdir()            # no empty folder behind
            except OSError:  # not empty (the usual case), or not ours to remove
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """The holder recorded in a lock file, in words (the lock may be younger than its note)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (f"pid {info['pid']} on {info['host']}, since {info['since']}: "
                f"{info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not yet recorded"
