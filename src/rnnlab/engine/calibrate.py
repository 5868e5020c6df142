"""Which backend is faster on this machine: the C kernel or the PyTorch one, measured.

The kernel is chosen by default only where it is measured faster (it always has
been, by 10-50x, but a compiler's generic target on an unknown CPU might not be).
The measurement trains one small DigitSum job a few dozen steps with each backend,
once per kernel build: the result is kept beside the cached library
(``calibration.json``) so later processes read it instead of measuring again.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rnnlab.engine import native
from rnnlab.io import atomic_write_text

_LOCK = threading.Lock()
_SPEEDS: dict[str, tuple[float, float]] = {}
FILE = "calibration.json"


def speeds() -> tuple[float, float]:
    """(kernel, torch backend) milliseconds per training step of one small job."""
    info = native.build_info()
    library = info.get("library", "")
    with _LOCK:
        if library in _SPEEDS:
            return _SPEEDS[library]
        path = _path(info)
        found = _read(path)
        if found is None:
            found = (_measure("kernel"), _measure("torch"))
            if path is not None:
                try:
                    atomic_write_text(path, json.dumps({"kernel_ms_per_step": found[0],
                                                        "torch_ms_per_step": found[1]}))
                except OSError:
                    pass  # a read-only cache: measure again next time
        _SPEEDS[library] = found
        return found


def _path(info: dict) -> Path | None:
    """Beside a compiled library; for a prebuilt one, in the cache (never inside the
    installed package)."""
    library = info.get("library", "")
    if not library:
        return None
    if info.get("source") == "prebuilt":
        return (native.cache_dir() / f"prebuilt-{native.source_digest()[:16]}"
                / Path(library).stem / FILE)
    return Path(library).with_name(FILE)


def _read(path: Path | None) -> tuple[float, float] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return float(data["kernel_ms_per_step"]), float(data["torch_ms_per_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _measure(backend: str) -> float:
    """Best of three: training time per step (build and scoring left out)."""
    from rnnlab.engine.jobs import Job
    from rnnlab.engine.population import train_population
    from rnnlab.models import model_config_for
    from rnnlab.tasks.digitsum import DigitSum
    from rnnlab.train.config import TrainConfig

    task = DigitSum(length=10)
    data = task.splits(0)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=1000, progress="off")
    job = Job(data["train"], data["dev"], model_config_for(task.spec, cell="srn"), config)
    best = float("inf")
    for _ in range(3):
        (result,) = train_population([job], backend=backend, workers=1)
        best = min(best, result.seconds * 1e3 / result.steps)
    return round(best, 5)
