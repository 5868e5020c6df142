"""Build the C kernel at first use, cache it, and call it through ctypes.

Why ctypes and plain C rather than a ``torch.utils.cpp_extension``: the kernel
needs no PyTorch headers (it works on raw float buffers), so it compiles in
about a second instead of most of a minute, needs no ``ninja``, and a call
releases the GIL, which lets a thread pool train several models at once.

Which vector code runs is decided at build time: the kernel is compiled with
``-march=native`` and picks its vector width and register block from the
target's macros (AVX-512, AVX2+FMA, AVX, SSE, NEON; see kernel.c), so one build
fits the CPU it was built on. ``$RNNLAB_KERNEL_MARCH`` (``x86-64-v2``, ...)
builds for another target instead, which is how the tests run every variant this
CPU can execute. A compiler that refuses ``-march=native`` gets its default target.

An installed wheel carries prebuilt libraries (``prebuilt/``, compiled by the
package build for portable targets: x86-64 levels 1 to 4, or armv8-a; see
:func:`build_prebuilt` and setup.py): :func:`load` takes the best one this CPU can
run, when it was built from this very kernel.c, and compiles only without one, so a
cluster node needs no compiler. ``$RNNLAB_KERNEL_MARCH`` or
``RNNLAB_KERNEL_PREBUILT=0`` skips them.

A compiled shared library is cached under ``$RNNLAB_CACHE_DIR`` (default
``$XDG_CACHE_HOME/rnnlab`` or ``~/.cache/rnnlab``) in a folder named by a hash of
the source, the compiler, the flags and this CPU's instruction-set flags, since
``-march=native`` code must never run on a different CPU. Without a working C
compiler :func:`load` returns ``None`` (:func:`why_unavailable` says why).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("kernel.c")
PREBUILT = Path(__file__).with_name("prebuilt")
MANIFEST = "manifest.json"
# Portable targets built into a wheel, best first, with the /proc/cpuinfo flags each
# needs (everything the compiler may use at that level).
PORTABLE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "x86_64": (
        ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2",
                       "fma", "bmi1", "bmi2", "f16c", "movbe", "abm")),
        ("x86-64-v3", ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm",
                       "xsave")),
        ("x86-64-v2", ("sse4_1", "sse4_2", "ssse3", "popcnt", "cx16", "lahf_lm")),
        ("x86-64", ()),
    ),
    "aarch64": (("armv8-a", ()),),
}
BASE_FLAGS = ("-O3", "-fno-math-errno", "-fPIC", "-shared")
_LOCK = threading.Lock()
_CACHE: dict[str, ctypes.CDLL | None] = {}
_ERRORS: dict[str, str] = {}
_BUILD: dict[str, str] = {}

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


def target_flags() -> tuple[str, ...]:
    """``-march=native``, or ``-march=$RNNLAB_KERNEL_MARCH`` when that is set."""
    march = os.environ.get("RNNLAB_KERNEL_MARCH", "").strip()
    return (f"-march={march or 'native'}",)


def cpu_flags() -> str:
    """This CPU's feature flags as the kernel's build key sees them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cpu_name() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo has none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def _build_key(cc: str, version: str, flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes().decode(), cc, version, " ".join(flags), cpu_flags(),
                 platform.machine()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def compile_kernel(cc: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile kernel.c into the shared library ``target`` (atomically); OSError on failure."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        result = subprocess.run([cc, *flags, *BASE_FLAGS, "-o", tmp, str(SOURCE), "-lm"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            said = result.stderr.strip()[:2000] or f"exit status {result.returncode}"
            raise OSError(f"{cc} failed: {said}")
        os.replace(tmp, target)  # atomic: concurrent builders never see half a library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _folder(target: Path) -> tuple[Path, str | None, list[Path]]:
    """Where to build ``target``: its cache folder, else a per-process scratch folder.

    Also returns the folders this call created, so a failed build can remove them.
    """
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.access(target.parent, os.W_OK | os.X_OK):
            return target, None, created
    except OSError:
        pass
    # A cache that cannot be written (a read-only home): build for this process only,
    # rather than fall back to the far slower torch backend.
    scratch = tempfile.mkdtemp(prefix="rnnlab-engine-")
    return Path(scratch) / target.name, scratch, created


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.rn_num_params.argtypes = [_i32p]
    lib.rn_num_params.restype = ctypes.c_long
    lib.rn_train.argtypes = [_i32p, _f32p, _f32p, _f32p, _f32p, _i64p, _i32p, _f32p, _i32p,
                             _f32p, _i32p, _i32p, ctypes.c_int32, _f32p]
    lib.rn_train.restype = ctypes.c_int
    lib.rn_logits.argtypes = [_i32p, _f32p, _i32p, _f32p, ctypes.c_int32, _f32p]
    lib.rn_logits.restype = ctypes.c_int
    lib.rn_variant.argtypes = []
    lib.rn_variant.restype = ctypes.c_char_p
    return lib


def _build_and_load(cc: str) -> ctypes.CDLL:
    version = _compiler_version(cc)
    errors = []
    for flags in (target_flags(), ()):
        target = cache_dir() / f"engine-{_build_key(cc, version, flags)}" / "librnnengine.so"
        target, scratch, created = _folder(target)
        try:
            if not target.exists():
                compile_kernel(cc, flags, target)
            lib = _declare(ctypes.CDLL(str(target)))
        except OSError as err:
            errors.append(str(err))
            for folder in created:  # a failed build leaves no empty cache folders behind
                _remove_if_empty(folder)
            if "-march=native" in flags:
                continue  # a compiler without -march=native: try its default target
            break
        finally:
            if scratch is not None:  # a loaded library stays mapped after its file goes
                shutil.rmtree(scratch, ignore_errors=True)
        _BUILD.update(compiler=f"{cc} ({version})", flags=" ".join((*flags, *BASE_FLAGS)),
                      library="" if scratch is not None else str(target), source="compiled")
        return lib
    raise OSError(errors[0])


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def source_digest() -> str:
    """SHA-256 of kernel.c: a prebuilt library is used only if built from this source."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def build_prebuilt(out: Path, cc: str | None = None) -> list[str]:
    """Compile the portable variants for this machine into ``out`` with a manifest;
    returns the targets built (none without a compiler). The package build calls this."""
    cc = cc or _compiler()
    if cc is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for march, needs in PORTABLE.get(platform.machine(), ()):
        try:
            compile_kernel(cc, (f"-march={march}",), out / f"librnnengine-{march}.so")
        except OSError:  # an older compiler without this level: the others still help
            continue
        built.append({"march": march, "needs": list(needs)})
    if built:
        manifest = {"source_sha256": source_digest(), "machine": platform.machine(),
                    "compiler": f"{cc} ({_compiler_version(cc)})", "variants": built}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return [v["march"] for v in built]


def _load_prebuilt(folder: Path = PREBUILT) -> ctypes.CDLL | None:
    """The best prebuilt library this CPU runs, if it was built from this kernel.c."""
    if os.environ.get("RNNLAB_KERNEL_MARCH", "").strip() or \
            os.environ.get("RNNLAB_KERNEL_PREBUILT", "").strip() == "0":
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("source_sha256") != source_digest() or \
            manifest.get("machine") != platform.machine():
        return None
    have = set(cpu_flags().split(":", 1)[-1].split())
    for variant in manifest.get("variants", []):
        if not set(variant["needs"]) <= have:
            continue
        path = folder / f"librnnengine-{variant['march']}.so"
        try:
            lib = _declare(ctypes.CDLL(str(path)))
        except OSError:
            continue
        _BUILD.update(compiler=manifest.get("compiler", "unknown"), library=str(path),
                      flags=" ".join((f"-march={variant['march']}", *BASE_FLAGS)),
                      source="prebuilt")
        return lib
    return None


def load() -> ctypes.CDLL | None:
    """The kernel library: a matching prebuilt one, else built on first use; ``None``
    when neither exists here."""
    with _LOCK:
        if "lib" in _CACHE:
            return _CACHE["lib"]
        lib = _load_prebuilt()
        if lib is not None:
            _CACHE["lib"] = lib
            return lib
        cc = _compiler()
        if cc is None:
            _ERRORS["lib"] = "no C compiler (gcc or $CC) found"
        else:
            try:
                lib = _build_and_load(cc)
            except OSError as err:
                _ERRORS["lib"] = str(err).splitlines()[0] if str(err) else repr(err)
        _CACHE["lib"] = lib
        return lib


def why_unavailable() -> str | None:
    """Why :func:`load` returned ``None`` (``None`` when it did not)."""
    return _ERRORS.get("lib")


def build_info() -> dict[str, str]:
    """The loaded kernel's variant, compiler, flags and library path (empty if none)."""
    lib = _CACHE.get("lib")
    if lib is None:
        return {}
    isa, width, block = lib.rn_variant().decode().split()
    return {"isa": isa, "vector_floats": int(width), "register_block": block, **_BUILD}


def f32(array) -> ctypes._Pointer:
    """A float pointer into a contiguous float32 NumPy array or CPU tensor."""
    return ctypes.cast(_address(array), _f32p)


def i32(array) -> ctypes._Pointer:
    return ctypes.cast(_address(array), _i32p)


def f32_null() -> ctypes._Pointer:
    """A null float pointer (an argument the kernel does not read)."""
    return _f32p()


def i32_null() -> ctypes._Pointer:
    return _i32p()


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
