"""Finding a user's object from ``path/to/file.py:Name`` or ``package.module:Name``.

Every way this can go wrong (no colon, a missing file, a syntax error, an import
that raises, a missing name) is one :class:`RnnlabError` sentence naming the file
or module and the name. A file is imported under a name derived from its path and
content hash, so two ``model.py`` files in different folders never collide, and an
edited file is imported afresh. :func:`source_hash` is what a run's hash includes,
so editing the model's file retrains its runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnlab.errors import RnnlabError


def split_spec(spec: str) -> tuple[str, str]:
    """``"where:Name"`` -> ``(where, Name)``; the last colon splits (Windows drives)."""
    where, colon, name = str(spec).rpartition(":")
    if not colon or not where or not name.isidentifier():
        raise RnnlabError(f"{spec!r} does not name a model: expected path/to/file.py:Name or "
                          "package.module:Name (a colon, then a Python name)")
    return where, name


def is_file_spec(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def source_hash(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise RnnlabError(f"model file {path} does not exist")
    digest = source_hash(path)
    module_name = f"rnnlab_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RnnlabError(f"model file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[module_name]
        raise RnnlabError(f"model file {path} has a syntax error at line {err.lineno}: "
                          f"{err.msg}") from None
    except Exception as err:
        del sys.modules[module_name]
        raise RnnlabError(f"importing model file {path} raised {type(err).__name__}: "
                          f"{_first_line(err)}") from None
    return module


def _import_module(where: str) -> ModuleType:
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as err:
        raise RnnlabError(f"no module {where!r} can be imported ({_first_line(err)}); give "
                          "package.module:Name of an installed package or path/to/file.py:Name"
                          ) from None
    except SyntaxError as err:
        raise RnnlabError(f"module {where} has a syntax error in {err.filename} at line "
                          f"{err.lineno}: {err.msg}") from None
    except Exception as err:
        raise RnnlabError(f"importing module {where} raised {type(err).__name__}: "
                          f"{_first_line(err)}") from None


def load_object(spec: str) -> tuple[Any, str, Path | None]:
    """The object ``spec`` names, its name, and its source file (``None`` if it has none)."""
    where, name = split_spec(spec)
    if is_file_spec(where):
        path = Path(where).expanduser().resolve()
        module, label = _import_file(path), f"model file {path}"
    else:
        module, label = _import_module(where), f"module {where}"
        path = Path(module.__file__).resolve() if getattr(module, "__file__", None) else None
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise RnnlabError(f"{label} has no {name!r}; it defines: {', '.join(public) or 'nothing'}")
    return getattr(module, name), name, path


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
