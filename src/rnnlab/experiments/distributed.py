"""Runs on a Ray cluster: one Ray task per group of runs, files back through Ray.

A memory experiment is many small independent runs, so it scales by runs, never
within one (a run is sequential in time). :func:`ray_runner` returns a runner with
the signature of the local ones (:mod:`rnnlab.experiments.runners`), so
``run_memory`` does everything else exactly as it does locally:

* The specs still to train are cut into groups (:func:`group_specs`: one group per
  cell and length, all its seeds, the unit the lock-step engine trains together),
  and each group becomes one Ray task that trains it with the local runner of the
  chosen engine in a temporary folder on the worker.
* The task returns each finished run's result and the bytes of its files (a few
  checkpoints and a CSV: small). The driver alone writes them, atomically, into
  ``runs/<run_id>/`` and hands the result to ``run_memory``, which appends the row.
  So no shared file system is needed and ``results.csv`` has a single writer:
  nothing a worker does can lose or double a row.
* A worker that dies has its task retried by Ray (``max_retries``); the runs of a
  retried task are trained again from their specs, which gives the same result.
  A driver that dies loses nothing finished: every finished run has its row, and
  the rerun skips it, as locally.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.io import atomic_write_bytes, ensure_dir

INSTALL_HINT = 'the ray backend needs Ray: pip install "rnnlab[ray]"'


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise RnnlabError(INSTALL_HINT) from err
    return ray


def group_specs(specs: Sequence[Any]) -> list[list[Any]]:
    """Specs grouped by (model, task, length), seeds together, in the given order."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for spec in specs:
        key = (getattr(spec, "cell", None), getattr(spec, "task", None), spec.length)
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


def _files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes()
            for path in sorted(run_dir.rglob("*")) if path.is_file()}


def train_group(engine: str, specs: Sequence[Any], cpus: int) -> list[tuple[Any, dict]]:
    """What one Ray task does: train ``specs`` locally in a temporary folder and return
    ``(result, {relative path: bytes})`` per finished run."""
    from rnnlab.engine.population import WORKERS_ENV
    from rnnlab.experiments.runners import get_runner

    # A Ray task gets exactly the CPUs it asked for: the engine must not start a thread
    # per core of the node.
    os.environ[WORKERS_ENV] = str(max(1, cpus))
    tmp = Path(tempfile.mkdtemp(prefix="rnnlab-ray-"))
    try:
        out = []
        for result in get_runner(engine)(specs, tmp):
            out.append((result, _files_of(tmp / result.spec.run_id)))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_run(run_dir: Path, files: dict[str, bytes]) -> None:
    ensure_dir(run_dir)
    for name, data in files.items():
        target = (run_dir / name).resolve()
        if run_dir.resolve() not in target.parents:  # a worker names only its own files
            raise RuntimeError(f"refusing to write {name!r} outside {run_dir}")
        ensure_dir(target.parent)
        atomic_write_bytes(target, data)


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``"auto"``: the one started with ``ray start``
    on this machine), or start a local one when ``address`` is ``None``.

    A local instance speaks over loopback only: Ray otherwise binds this machine's
    outward address even for a single-machine run (it reads the switch at import).
    """
    if not address and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _ray()
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:
            raise RnnlabError(f"cannot reach a Ray cluster at {address!r}: start one with "
                              f"'ray start --head', or pass its HOST:PORT ({err})") from err
    else:
        ray.init(num_cpus=num_cpus, **kwargs)


def _get(ray: Any, ref: Any) -> list[tuple[Any, dict]]:
    """The task's value; a user error raised on a worker is raised here as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, RnnlabError):
            raise cause from None
        raise


def ray_runner(engine: str = "fast", *, address: str | None = None, cpus_per_task: int = 1,
               max_retries: int = 3,
               task: Callable[..., list[tuple[Any, dict]]] = train_group
               ) -> Callable[[Sequence[Any], Path], Iterator[Any]]:
    """A runner that trains each group of specs as one Ray task (``cpus_per_task`` CPUs,
    retried ``max_retries`` times if its worker dies) and yields results as groups end."""
    if cpus_per_task < 1:
        raise RnnlabError(f"--cpus-per-task must be >= 1, got {cpus_per_task}")

    def run(specs: Sequence[Any], runs_dir: Path) -> Iterator[Any]:
        connect(address)
        ray = _ray()
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries)(task)
        pending = {remote.remote(engine, group, cpus_per_task): group
                   for group in group_specs(specs)}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    pending.pop(ref)
                    for result, files in _get(ray, ref):
                        _write_run(Path(runs_dir) / result.spec.run_id, files)
                        yield result
        finally:
            for ref in pending:  # Ctrl-C or an error: stop what is still queued
                ray.cancel(ref, force=True)

    run.label = f"ray {address or 'local'}"  # type: ignore[attr-defined]
    return run
