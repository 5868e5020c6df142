"""Run a user's unmodified script under observation, in a child process the doctor
owns, and bring its diagnosis back.

The child (:mod:`rnnlab.doctor.child`) runs the script as ``python SCRIPT ARGS`` would,
in its own session and process group, stops it at the budget and writes the report
as JSON. Whatever the script does — swallow the stop in a bare ``except:``, ignore
signals, leave non-daemon threads or forked children behind, call ``os._exit`` — the
parent ends the whole group when the child is done, or kills it at a hard deadline,
and always returns a report. ``healthy`` (exit 0) means only "watched and healthy".
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rnnlab.doctor.findings import Finding, Report, short_path
from rnnlab.doctor.report_files import check_out_dir, write
from rnnlab.errors import ensure

# Beyond --max-seconds: the child's start (importing torch), the stop's grace and the
# diagnosis. Past it the whole process group is killed.
HARD_MARGIN = 90.0


def run_script(script: str | os.PathLike, args: Sequence[str] = (), *, max_steps: int = 200,
               max_seconds: float = 60.0, out: str | os.PathLike | None = None,
               quiet: bool = False) -> Report:
    """Run ``script`` with ``args`` for at most ``max_steps`` optimizer steps or
    ``max_seconds`` seconds in a child process, and return the diagnosis (also
    written to ``out``).

    With ``quiet``, the script's own prints go to stderr, so stdout carries only
    what the caller prints (the JSON of ``rnnlab doctor --json``).
    """
    path = Path(script)
    ensure(path.is_file(), f"no script at {str(path)!r}: give the path of a Python training "
                          "script, e.g. rnnlab doctor train.py")
    ensure(max_steps >= 1, f"--max-steps must be at least 1, got {max_steps}")
    ensure(math.isfinite(max_seconds) and max_seconds > 0,
          f"--max-seconds must be a finite number of seconds above 0, got {max_seconds}: "
          "the doctor always stops the script it runs")
    if out is not None:
        check_out_dir(out)
    path = path.resolve()
    with tempfile.TemporaryDirectory(prefix="rnnlab-doctor-") as tmp:
        result = Path(tmp) / "report.json"
        spec = {"script": str(path), "args": list(args), "max_steps": max_steps,
                "max_seconds": max_seconds, "quiet": quiet, "result": str(result),
                "spawned": time.time(),
                "out": str(Path(out).resolve()) if out is not None else None}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        start = time.perf_counter()
        pid = _start(spec_path)
        status, killed = _wait(pid, max_seconds + HARD_MARGIN)
        seconds = time.perf_counter() - start
        if result.is_file():
            report = Report.from_dict(json.loads(result.read_text(encoding="utf-8")))
        else:
            report = _no_report(path, status, killed, seconds, max_seconds)
            if out is not None:
                write(report, out)
    report.wall_seconds = round(seconds, 3)
    report.plots = [short_path(p) for p in report.plots]
    return report


def _start(spec_path: Path) -> int:
    """Start the child in a new session (its own process group) and return its pid.

    Forked from this process when that is safe (POSIX, no other thread that could hold
    a lock across the fork): torch and the doctor are already imported, so the child
    starts at once. Otherwise a fresh interpreter (``python -m rnnlab.doctor.child``)
    pays the imports again.
    """
    if hasattr(os, "fork") and threading.active_count() == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                os.setsid()
                from rnnlab.doctor import child

                child.main(str(spec_path))
            finally:
                os._exit(3)
        return pid
    env = {**os.environ, "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg")}
    return subprocess.Popen([sys.executable, "-m", "rnnlab.doctor.child", str(spec_path)],
                            start_new_session=True, env=env).pid


def _wait(pid: int, limit: float) -> tuple[int, bool]:
    """Wait for the child, at most ``limit`` seconds; then end its whole process group
    (forked children, threads), and reap it. Returns (exit status, killed)."""
    deadline = time.perf_counter() + limit
    killed = False
    status = None
    try:
        while True:
            if hasattr(os, "waitid"):  # leaves the child a zombie: its group id stays taken
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is not None and info.si_pid:
                    break
            else:  # macOS: reaped; a group with members left keeps its id all the same
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = code
                    break
            if time.perf_counter() > deadline:
                killed = True
                break
            time.sleep(0.02)
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if status is None:
            _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), killed


def _no_report(path: Path, status: int, killed: bool, seconds: float,
               max_seconds: float) -> Report:
    if killed:
        why = (f"the script's process did not end within {seconds:.0f} s (--max-seconds "
               f"{max_seconds:g} plus {HARD_MARGIN:g} s for start-up and diagnosis) and was "
               "killed with its process group")
    elif status < 0:
        why = f"the script's process was killed by signal {-status} ({_signal_name(-status)})"
    else:
        why = f"the script's process ended with exit status {status} without a report"
    report = Report(target=path.name, stopped=why, seconds=round(seconds, 3))
    report.add(Finding(
        "not-diagnosed", "error", "the doctor could not watch the script to the end",
        why + "; nothing it recorded could be diagnosed",
        "Run the script alone to see how it ends; a script that kills its own process or "
        "blocks every signal cannot be diagnosed.", {"status": status, "killed": killed}))
    return report


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"
