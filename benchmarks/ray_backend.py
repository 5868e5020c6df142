"""Runs per minute on the local backend against Ray on this machine, and Ray's cost per task.

    python benchmarks/ray_backend.py            # the default memory experiment (84 runs)
    python benchmarks/ray_backend.py --quick    # 2 cells x 3 lengths x 2 seeds, tiny budget

Both backends train the same grid with the same engine into fresh folders, in one
run, so the ratio is what to read on a shared machine. Ray runs on a local instance
(loopback only, as many CPUs as this machine has): on one machine it can only add
overhead; what it buys is more machines (docs/scale.md). The per-task overhead is
measured on groups that train almost nothing (one step each), run one at a time on
Ray, against the same groups trained locally.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only


def _cpu() -> str:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model.startswith("AMD"):
                model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")) and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = ",".join(f for f in ("avx512f", "avx2", "fma", "asimd") if f in have)
    except OSError:
        pass
    return f"{model} [{flags}] x{os.cpu_count()}"


def _timed(config, out: Path, runner=None) -> tuple[float, int]:
    from rnnlab.experiments import run_memory

    start = time.perf_counter()
    outcome = run_memory(config, out, runner=runner, progress=False)
    return time.perf_counter() - start, outcome.trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid")
    parser.add_argument("--engine", default="fast")
    args = parser.parse_args()

    import ray

    from rnnlab.experiments import MemoryConfig
    from rnnlab.experiments.distributed import group_specs, ray_runner

    if args.quick:
        config = MemoryConfig(cells=("srn", "gru"), lengths=(5, 10, 15), seeds=2, epochs=5,
                              engine=args.engine)
    else:
        config = MemoryConfig(engine=args.engine)
    tiny = MemoryConfig(cells=("srn",), lengths=tuple(range(5, 21)), seeds=1, hidden_size=4,
                        embedding_dim=4, epochs=1, k_train=1, k_dev=1, k_test=1,
                        batch_size=100, eval_every=1000, engine=args.engine)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        ray_start = time.perf_counter() - start
        runner = ray_runner(args.engine)
        local_s, n = _timed(config, root / "local")
        ray_s, n_ray = _timed(config, root / "ray", runner)
        # The runners alone (no report), one group at a time on both sides (each Ray task
        # asks for every CPU, and locally each group is its own call), so the difference
        # is Ray's overhead, not parallelism or the report.
        from rnnlab.experiments.runners import get_runner

        local_runner = get_runner(args.engine)
        serial = ray_runner(args.engine, cpus_per_task=os.cpu_count() or 1)
        groups_of_tiny = group_specs(tiny.specs())
        start = time.perf_counter()
        for group in groups_of_tiny:
            list(local_runner(group, root / "tiny-local"))
        tiny_local = time.perf_counter() - start
        start = time.perf_counter()
        list(serial(tiny.specs(), root / "tiny-ray"))
        tiny_ray = time.perf_counter() - start
        ray.shutdown()
    groups = len(group_specs(tiny.specs()))
    result = {
        "cpu": _cpu(), "engine": args.engine, "runs": n,
        "local_seconds": round(local_s, 2), "ray_seconds": round(ray_s, 2),
        "local_runs_per_minute": round(60 * n / local_s, 1),
        "ray_runs_per_minute": round(60 * n_ray / ray_s, 1),
        "ray_over_local": round(ray_s / local_s, 2),
        "ray_start_seconds": round(ray_start, 2),
        "overhead_per_task_seconds": round((tiny_ray - tiny_local) / groups, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
