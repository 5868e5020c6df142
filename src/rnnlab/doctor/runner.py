"""Run a user's unmodified script under observation, then diagnose it.

The script runs in this process (``runpy``) with its own ``sys.argv`` and its folder
first on ``sys.path``, exactly as ``python SCRIPT ARGS`` would run it, while the
:class:`~rnnlab.doctor.hooks.Watcher` hooks are installed. When the step or time
budget is spent a hook raises :class:`~rnnlab.doctor.hooks.BudgetSpent` inside the
script, which unwinds it; a ``SIGALRM`` timer does the same for a script stuck outside
any hook. The script's own exception becomes a finding, not a doctor crash.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from rnnlab.doctor import plots
from rnnlab.doctor.diagnose import diagnose
from rnnlab.doctor.findings import Finding, Location, Report
from rnnlab.doctor.hooks import BudgetSpent, Watcher
from rnnlab.errors import check
from rnnlab.io import atomic_write_bytes, atomic_write_json


def run_script(script: str | os.PathLike, args: Sequence[str] = (), *, max_steps: int = 200,
               max_seconds: float = 60.0, out: str | os.PathLike | None = None,
               quiet: bool = False) -> Report:
    """Run ``script`` with ``args`` for at most ``max_steps`` optimizer steps or
    ``max_seconds`` seconds, and return the diagnosis (also written to ``out``).

    With ``quiet``, the script's own prints go to stderr, so stdout carries only
    what the caller prints (the JSON of ``rnnlab doctor --json``).
    """
    path = Path(script)
    check(path.is_file(), f"no script at {str(path)!r}: give the path of a Python training "
                          "script, e.g. rnnlab doctor train.py")
    check(max_steps >= 1, f"--max-steps must be at least 1, got {max_steps}")
    check(max_seconds > 0, f"--max-seconds must be positive, got {max_seconds}")
    if out is not None:
        check_out_dir(out)
    path = path.resolve()
    watcher = Watcher([str(path)], max_steps=max_steps, max_seconds=max_seconds)
    error: BaseException | None = None
    stopped = "the script finished"
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_backend = os.environ.get("MPLBACKEND")
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.parent))
    alarm = _Alarm(max_seconds * 2 + 10)
    redirect = contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()
    try:
        with redirect, alarm, watcher:
            runpy.run_path(str(path), run_name="__main__")
    except BudgetSpent:
        stopped = watcher.stopped or "time budget spent"
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            error = exit_
            stopped = f"the script exited with {exit_.code}"
    except Exception as exc:  # the script's own error is a finding, not a doctor crash
        error = exc
        stopped = f"the script raised {type(exc).__name__}"
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_backend is None:
            os.environ.pop("MPLBACKEND", None)
        _close_figures()
    report = diagnose(watcher.obs, path.name, stopped=stopped)
    if error is not None:
        report.findings.insert(0, _script_error(error, path))
    if out is not None:
        write(report, out)
    return report


def check_out_dir(out: str | os.PathLike) -> None:
    """Raise :class:`RnnlabError` now if ``out`` can never become a writable folder
    (a file in its way, a read-only parent), so nothing runs only to fail at the end.
    Creates nothing."""
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check(existing.is_dir(), f"cannot create the output folder {str(out)!r}: "
                             f"{str(existing)!r} is not a folder")
    check(os.access(existing, os.W_OK | os.X_OK),
          f"cannot create the output folder {str(out)!r}: {str(existing)!r} is not writable")


def _script_error(error: BaseException, path: Path) -> Finding:
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve() == path]
    where = [Location(str(path), f.lineno or 0, f.line or "") for f in frames[-1:]]
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    hint = ""
    if "hidden" in message.lower() and "size" in message.lower():
        hint = (" A hidden state of the wrong batch size usually means a state carried over "
                "from the previous batch (a smaller last batch, or a state kept across "
                "iterations).")
    return Finding(
        "script-error", "error", f"the script raised {type(error).__name__} before the "
                                 "observation ended",
        f"{type(error).__name__}: {message}",
        "Fix this error first; the diagnosis below covers only what ran before it." + hint,
        {"exception": type(error).__name__}, where)


def write(report: Report, out: str | os.PathLike) -> Report:
    """Write ``findings.json`` and the plots into ``out`` (atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    profiles = report.series.get("state_gradients") or []
    if profiles:
        figures["state_gradients.png"] = plots.state_gradients(profiles)
    if report.series.get("grad_norms"):
        figures["grad_norms.png"] = plots.grad_norm_series(report.series["grad_norms"])
    if len(report.series.get("lag_profile") or []) >= 2:
        figures["lag_profile.png"] = plots.lag_profile(report.series["lag_profile"])
    if report.series.get("loss"):
        figures["loss.png"] = plots.loss_curve(report.series["loss"])
    for name, png in figures.items():
        atomic_write_bytes(out / name, png)
    report.plots = [str(out / name) for name in figures]
    atomic_write_json(out / "findings.json", report.to_dict())
    return report


def _close_figures() -> None:
    # A script's pyplot figures would pile up across runs in one process (tests).
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


class _Alarm:
    """A hard stop for a script that never reaches a hook (main thread, POSIX only)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = (hasattr(signal, "setitimer")
                       and threading.current_thread() is threading.main_thread())
        self.previous = None
        self.start = 0.0

    def _fire(self, signum: int, frame: object) -> None:
        raise BudgetSpent(f"time budget spent ({time.perf_counter() - self.start:.0f} s)")

    def __enter__(self) -> _Alarm:
        if self.active:
            self.start = time.perf_counter()
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
