"""Every vector variant of the kernel computes the trainer's numbers.

kernel.c picks its vector width and register block from the build target (AVX-512,
AVX2+FMA, SSE, NEON). Variants this CPU can execute are built with
``RNNLAB_KERNEL_MARCH`` and checked against the ordinary trainer like the default
build; the others are compiled, and the NEON one is run under qemu (a cross
compiler and qemu-user from Debian, which ``make test`` installs under CI) and
compared step by step with the x86 builds on a C driver (tests/kernel/driver.c).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnlab.engine import describe, native, train_population
from test_engine import assert_same_run, make_jobs, train_alone

KERNEL = native.SOURCE
DRIVER = Path(__file__).with_name("kernel") / "driver.c"
X86 = platform.machine() in ("x86_64", "AMD64")
# target -> (the variant kernel.c must choose, CPU flags needed to run it)
X86_TARGETS = {
    "x86-64": ("sse", ()),
    "x86-64-v2": ("sse", ("sse4_2", "popcnt")),
    "sandybridge": ("avx", ("avx",)),  # AVX without AVX2 and FMA
    "x86-64-v3": ("avx2-fma", ("avx2", "fma", "bmi2")),
    "x86-64-v4": ("avx512", ("avx512f", "avx512bw", "avx512vl", "avx512dq")),
}


def can_run(target: str) -> bool:
    flags = set(native.cpu_flags().split())
    return X86 and all(f in flags for f in X86_TARGETS[target][1])


def gcc() -> str:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no gcc")
    return cc


@pytest.fixture
def kernel_for(tmp_path, monkeypatch):
    """Build and load the kernel for a target in a fresh cache; undone afterwards."""
    monkeypatch.setattr(native, "_CACHE", {})
    monkeypatch.setattr(native, "_ERRORS", {})
    monkeypatch.setattr(native, "_BUILD", {})
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNLAB_ENGINE_BACKEND", raising=False)

    def build(target: str) -> dict:
        monkeypatch.setenv("RNNLAB_KERNEL_MARCH", target)
        assert native.load() is not None, native.why_unavailable()
        return native.build_info()

    return build


@pytest.mark.slow
@pytest.mark.parametrize("target", ["x86-64-v2", "x86-64-v3"])
@pytest.mark.parametrize("cell", ["srn", "lstm", "gru", "residual-srn"])
def test_variant_matches_trainer(kernel_for, target, cell):
    if not can_run(target):
        pytest.skip(f"this CPU cannot run {target} code")
    info = kernel_for(target)
    assert info["isa"] == X86_TARGETS[target][0]
    assert f"-march={target}" in info["flags"]
    specs = [(5, 0, 1e-3), (9, 1, 3e-3, {"clip_norm": 0.5})]
    jobs = make_jobs(None, cell, specs, epochs=3)
    results = train_population(jobs, backend="kernel")
    for job, ours in zip(jobs, results, strict=True):
        theirs, _ = train_alone(job, None)
        assert_same_run(ours, theirs)


@pytest.mark.parametrize("target", list(X86_TARGETS))
def test_every_x86_variant_compiles_to_its_width(tmp_path, target):
    cc = gcc()
    macros = subprocess.run([cc, f"-march={target}", "-dM", "-E", str(KERNEL)],
                            capture_output=True, text=True, check=True).stdout
    assert f'#define RN_ISA "{X86_TARGETS[target][0]}"' in macros
    # -Werror=psabi: no vector wider than the target's registers (the old AVX2 slowdown)
    subprocess.run([cc, f"-march={target}", "-O3", "-fno-math-errno", "-Wall",
                    "-Werror", "-fPIC", "-shared", "-o", str(tmp_path / "k.so"), str(KERNEL),
                    "-lm"], check=True)


def run_driver(cc: list[str], flags: list[str], out: Path, runner: list[str] = ()) -> list[float]:
    subprocess.run([*cc, *flags, "-O3", "-fno-math-errno", "-Wall", "-Werror", "-o", str(out),
                    str(KERNEL), str(DRIVER), "-lm"], check=True)
    text = subprocess.run([*runner, str(out)], capture_output=True, text=True,
                          check=True).stdout
    return [float(line) for line in text.splitlines() if not line.startswith("#")]


def assert_same_numbers(ours: list[float], theirs: list[float], rel: float) -> None:
    assert len(ours) == len(theirs) == 3 * 4 * 2 * 41  # heads x cells x optimisers x lines
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert abs(a - b) <= rel * max(abs(b), 1.0), (i, a, b)


def test_x86_variants_compute_the_same_numbers(tmp_path):
    cc = gcc()
    runnable = [t for t in ("x86-64-v2", "x86-64-v3", "x86-64-v4") if can_run(t)]
    if len(runnable) < 2:
        pytest.skip("this CPU runs fewer than two x86 variants")
    outputs = {t: run_driver([cc], [f"-march={t}"], tmp_path / t) for t in runnable}
    first = outputs[runnable[0]]
    for target in runnable[1:]:
        # FMA (v3, v4) against separate multiply and add (v2): float rounding, no more
        assert_same_numbers(outputs[target], first, rel=2e-5)


def test_neon_variant_runs_and_matches_x86(tmp_path):
    cross, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if cross is None or qemu is None:
        message = ("no aarch64 cross compiler or qemu-aarch64 (Debian: gcc-aarch64-linux-gnu "
                   "qemu-user; `make test` installs them under CI)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    macros = subprocess.run([cross, "-O3", "-dM", "-E", str(KERNEL)], capture_output=True,
                            text=True, check=True).stdout
    assert '#define RN_ISA "neon"' in macros
    neon = run_driver([cross], ["-static"], tmp_path / "neon", runner=[qemu])
    if X86 and can_run("x86-64-v3"):
        # both with FMA and the same order of operations: equal to float rounding
        assert_same_numbers(neon, run_driver([gcc()], ["-march=x86-64-v3"], tmp_path / "v3"),
                            rel=1e-6)


def test_describe_names_the_variant_that_runs(kernel_for):
    target = "x86-64-v3" if can_run("x86-64-v3") else "x86-64-v2"
    if not can_run(target):
        pytest.skip("not an x86-64 CPU")
    kernel_for(target)
    info = describe("kernel")
    assert info["backend"] == "kernel" and info["reason"] is None
    assert info["isa"] == X86_TARGETS[target][0]
    assert info["vector_floats"] == {"sse": 4, "avx2-fma": 8}[info["isa"]]
    assert Path(info["library"]).is_file() and "gcc" in info["compiler"]
