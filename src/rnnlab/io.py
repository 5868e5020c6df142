"""Atomic file writes: a reader never sees a half-written file.

Every file rnnlab writes goes to a temporary file in the same folder, is flushed
and fsynced, then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rnnlab.errors import RnnlabError


def _default_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents); one that cannot be made is a user error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RnnlabError(f"cannot create the folder {path}: {err.strerror or err}") from err
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; results are meant to be shared like any other file.
        os.chmod(tmp, _default_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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
    new one, never a half-written row.
    """
    path = Path(path)
    rows: list[Mapping[str, Any]] = read_csv(path) if path.exists() else []
    rows.append(row)
    return write_csv(path, fieldnames, rows)
