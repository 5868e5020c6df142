"""Build the C kernel at first use, cache it, and call it through ctypes.

Why ctypes and plain C rather than a ``torch.utils.cpp_extension``: the kernel
needs no PyTorch headers (it works on raw float buffers), so it compiles in
about a second instead of most of a minute, needs no ``ninja``, and a call
releases the GIL, which lets a thread pool train several models at once.

The shared library is cached under ``$RNNLAB_CACHE_DIR`` (default
``$XDG_CACHE_HOME/rnnlab`` or ``~/.cache/rnnlab``) in a folder named by a hash of
the source, the compiler, the flags and this CPU's instruction-set flags, since
``-march=native`` code must never run on a different CPU. Without a C compiler
:func:`load` returns ``None`` and the engine uses its pure-PyTorch backend.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("kernel.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared")
_LOCK = threading.Lock()
_CACHE: dict[str, ctypes.CDLL | None] = {}
_ERRORS: dict[str, str] = {}

_f32p = ctypes.POINTER(ctypes.c_float)
_i32p = ctypes.POINTER(ctypes.c_int32)
_i64p = ctypes.POINTER(ctypes.c_int64)


def cache_dir() -> Path:
    """Where built kernels are kept."""
    root = os.environ.get("RNNLAB_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rnnlab"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build_key(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes().decode(), cc, version, " ".join(FLAGS), _cpu_flags(),
                 platform.machine()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _compile(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        result = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"{cc} failed: {result.stderr.strip()[:2000]}")
        os.replace(tmp, target)  # atomic: concurrent builders never see half a library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.rn_num_params.argtypes = [_i32p]
    lib.rn_num_params.restype = ctypes.c_long
    lib.rn_train.argtypes = [_i32p, _f32p, _f32p, _f32p, _f32p, _i64p, _i32p, _i32p, _i32p,
                             _i32p, ctypes.c_int32, _f32p]
    lib.rn_train.restype = ctypes.c_int
    lib.rn_logits.argtypes = [_i32p, _f32p, _i32p, ctypes.c_int32, _f32p]
    lib.rn_logits.restype = ctypes.c_int
    return lib


def load() -> ctypes.CDLL | None:
    """The kernel library, built on first use; ``None`` when it cannot be built here.

    ``RNNLAB_ENGINE_BACKEND=torch`` disables it (the pure-PyTorch backend is used).
    """
    if os.environ.get("RNNLAB_ENGINE_BACKEND", "").lower() == "torch":
        return None
    with _LOCK:
        if "lib" in _CACHE:
            return _CACHE["lib"]
        lib = None
        cc = _compiler()
        if cc is None:
            _ERRORS["lib"] = "no C compiler (gcc or $CC) found"
        else:
            scratch = None
            try:
                target = cache_dir() / f"engine-{_build_key(cc)}" / "librnnengine.so"
                if not target.exists() and not _writable(target.parent):
                    # A cache that cannot be written (a read-only home): build for this
                    # process only, rather than fall back to the far slower torch backend.
                    scratch = tempfile.mkdtemp(prefix="rnnlab-engine-")
                    target = Path(scratch) / target.name
                if not target.exists():
                    _compile(cc, target)
                lib = _declare(ctypes.CDLL(str(target)))
            except OSError as err:
                _ERRORS["lib"] = str(err)
            finally:
                if scratch is not None:  # a loaded library stays mapped after its file goes
                    shutil.rmtree(scratch, ignore_errors=True)
        _CACHE["lib"] = lib
        return lib


def why_unavailable() -> str | None:
    """Why :func:`load` returned ``None`` (``None`` when it did not)."""
    return _ERRORS.get("lib")


def f32(array) -> ctypes._Pointer:
    """A float pointer into a contiguous float32 NumPy array or CPU tensor."""
    return ctypes.cast(_address(array), _f32p)


def i32(array) -> ctypes._Pointer:
    return ctypes.cast(_address(array), _i32p)


def i64(array) -> ctypes._Pointer:
    return ctypes.cast(_address(array), _i64p)


def _address(array) -> int:
    if hasattr(array, "data_ptr"):
        if not array.is_contiguous():
            raise ValueError("kernel buffers must be contiguous")
        return array.data_ptr()
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("kernel buffers must be contiguous")
    return array.ctypes.data
