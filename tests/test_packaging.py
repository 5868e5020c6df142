"""The kernel built at install time: a wheel carries it, an installed wheel needs no compiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from rnnlab.engine import native

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_variant(tmp_path, monkeypatch):
    """A prebuilt folder holding the baseline variant for this machine."""
    monkeypatch.setattr(native, "_BUILD", {})  # keep this process's kernel description
    machine = native.platform.machine()
    baseline = native.PORTABLE.get(machine, ())[-1:]
    if not baseline:
        pytest.skip(f"no portable kernel target for {machine}")
    monkeypatch.setattr(native, "PORTABLE", {machine: baseline})
    monkeypatch.delenv("RNNLAB_KERNEL_MARCH", raising=False)
    monkeypatch.delenv("RNNLAB_KERNEL_PREBUILT", raising=False)
    folder = tmp_path / "prebuilt"
    assert native.build_prebuilt(folder) == [baseline[0][0]]
    return folder


def test_a_matching_prebuilt_kernel_is_loaded_and_a_stale_one_is_not(one_variant, monkeypatch):
    lib = native._load_prebuilt(one_variant)
    assert lib is not None and lib.rn_variant().decode().split()[0] in ("sse", "neon",
                                                                         "generic")
    assert native._BUILD["source"] == "prebuilt"
    manifest_path = one_variant / native.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    monkeypatch.setenv("RNNLAB_KERNEL_PREBUILT", "0")
    assert native._load_prebuilt(one_variant) is None  # asked to compile instead
    monkeypatch.delenv("RNNLAB_KERNEL_PREBUILT")
    manifest_path.write_text(json.dumps({**manifest, "source_sha256": "0" * 64}))
    assert native._load_prebuilt(one_variant) is None  # built from another kernel.c
    needs = [{**v, "needs": ["no-such-cpu-flag"]} for v in manifest["variants"]]
    manifest_path.write_text(json.dumps({**manifest, "variants": needs}))
    assert native._load_prebuilt(one_variant) is None  # this CPU cannot run it


@pytest.mark.slow
def test_an_installed_wheel_runs_the_kernel_without_a_compiler(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(wheels)], check=True,
                   cwd=tmp_path)
    (wheel,) = wheels.glob("rnnlab-*.whl")
    # A fresh environment holding only the wheel; torch and the other dependencies
    # come from this one through a .pth file (installing torch again takes minutes).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    site, str(wheel)], check=True)
    Path(site, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "CC": "/bin/false", "RNNLAB_CACHE_DIR": str(cache),
           "PYTHONPATH": ""}
    env.pop("RNNLAB_KERNEL_MARCH", None)
    script = ("import json, rnnlab, rnnlab.engine as e; "
              "print(json.dumps({'file': rnnlab.__file__, **e.describe('kernel')}))")
    out = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["file"].startswith(site)  # the installed copy, not the source tree
    assert info["backend"] == "kernel" and info["source"] == "prebuilt", info
    assert info["library"].startswith(site)
    assert list(cache.iterdir()) == []  # nothing was compiled
    # and it trains: a tiny experiment on the kernel, the compiler still missing
    runs = tmp_path / "m"
    done = subprocess.run(
        [python, "-m", "rnnlab", "memory", "--cells", "srn", "--lengths", "3", "--seeds", "1",
         "--epochs", "1", "--task-param", "k_train=1", "--task-param", "k_dev=1",
         "--task-param", "k_test=1", "--quiet", "--out", str(runs)],
        env={**env, "RNNLAB_ENGINE_BACKEND": "kernel"}, capture_output=True, text=True,
        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (runs / "results.csv").is_file() and list(cache.iterdir()) == []
    # choosing by speed measures once, and keeps the numbers in the cache, not the package
    auto = subprocess.run([python, "-c", "import rnnlab.engine as e; print(e.describe())"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert auto.returncode == 0 and "kernel_ms_per_step" in auto.stdout, auto.stderr
    assert not list(Path(info["library"]).parent.glob("calibration.json"))
    assert len(list(cache.rglob("calibration.json"))) == 1
