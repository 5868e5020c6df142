"""Build step beyond pyproject.toml: the engine's C kernel, compiled into the wheel.

``build_py`` compiles kernel.c for portable CPU targets (``native.build_prebuilt``)
into ``rnnlab/engine/prebuilt/``, so an installed wheel needs no compiler; without a
compiler the wheel is built without them and the kernel is compiled at first use, as
in an editable install (which skips this step). native.py is loaded on its own,
since importing the package would import torch, which a build environment lacks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

NATIVE = Path(__file__).parent / "src" / "rnnlab" / "engine" / "native.py"


def _native():
    spec = importlib.util.spec_from_file_location("_rnnlab_native_build", NATIVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithKernel(build_py):
    """``build_py`` and then the prebuilt kernels (not in an editable install)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib) / "rnnlab" / "engine" / "prebuilt"
        built = _native().build_prebuilt(out)
        print(f"rnnlab: prebuilt engine kernels: {', '.join(built) or 'none (no C compiler)'}")


class PlatformDistribution(Distribution):
    """The wheel holds shared libraries, so it is tagged for this platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithKernel}, distclass=PlatformDistribution)
