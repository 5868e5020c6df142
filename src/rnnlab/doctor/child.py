"""The doctor's child process: runs the user's script under the watcher, diagnoses it
and writes the report, then ends itself with ``os._exit`` (no thread or handler of
the script can keep it alive).

The script is stopped at its budget in three ways, each a fallback for the one
before: the watcher's hooks raise :class:`BudgetSpent` (again at every later hook,
for scripts that swallow it); a watchdog thread injects it into the main thread
(``PyThreadState_SetAsyncExc``, and a signal that interrupts a blocking call) when the
script does not unwind; and if the script survives even that, the watchdog diagnoses
from what was recorded and exits. The parent (:mod:`rnnlab.doctor.runner`) kills the
whole process group if all of this fails.

Started as ``python -m rnnlab.doctor.child SPEC.json``, or forked from the doctor's
process and entered at :func:`main`.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

GRACE = 1.0  # seconds a stopped script gets to unwind before the watchdog steps in
INJECT = 2.0  # seconds of injections before the watchdog gives up on the main thread


class _Finish:
    """Diagnoses once, from whichever thread gets here first, then ends the process."""

    def __init__(self, spec: dict[str, Any], watcher: Any, main_ident: int) -> None:
        self.spec = spec
        self.watcher = watcher
        self.main_ident = main_ident
        self.lock = threading.Lock()
        self.finishing = False
        self.real_exit = os._exit

    def begin(self) -> bool:
        with self.lock:
            if self.finishing:
                return False
            self.finishing = True
        if threading.get_ident() == self.main_ident:
            signal.signal(signal.SIGALRM, signal.SIG_IGN)  # no stop lands in the diagnosis
            _async_raise(self.main_ident, None)  # drop an injection still pending
        return True

    def __call__(self, stopped: str, error: BaseException | None = None,
                 code: int = 0) -> None:
        if not self.begin():
            while True:  # the other thread is writing the report and will exit
                time.sleep(1)
        try:
            self._write(stopped, error)
        except BaseException:  # a doctor bug: say so, then still end the process
            traceback.print_exc()
            code = 3
        sys.stdout.flush()
        sys.stderr.flush()
        self.real_exit(code)

    def _write(self, stopped: str, error: BaseException | None) -> None:
        from rnnlab.doctor.diagnose import diagnose
        from rnnlab.doctor.report_files import script_error, write
        from rnnlab.io import atomic_write_json

        self.watcher.remove()
        began = time.perf_counter()
        path = Path(self.spec["script"])
        report = diagnose(self.watcher.obs, path.name, stopped=stopped,
                          budget_stopped=bool(self.watcher.stopped))
        if error is not None:
            report.findings.insert(0, script_error(error, path))
        diagnosed = time.perf_counter()
        if self.spec.get("out"):
            write(report, self.spec["out"])
        started = self.spec.get("spawned", time.time())
        script_began = time.time() - (time.perf_counter() - self.watcher._start)
        report.timings = {"doctor_start": round(script_began - started, 3),
                          "script": round(self.watcher.obs.seconds, 3),
                          "diagnosis": round(diagnosed - began, 3),
                          "plots": round(time.perf_counter() - diagnosed, 3)}
        atomic_write_json(self.spec["result"], report.to_dict())


def _async_raise(ident: int, exc: type | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(0))


def _watchdog(finish: _Finish, budget: Any) -> None:
    """Stop the main thread once the budget is spent and it has not unwound."""
    watcher = finish.watcher
    while True:
        now = time.perf_counter()
        limit = watcher._start + watcher.max_seconds
        if watcher.stopped_at is not None:
            limit = min(limit, watcher.stopped_at)
        if now >= limit + GRACE:
            break
        time.sleep(min(0.05, limit + GRACE - now))
    if not watcher.stopped:
        watcher.stopped = "time budget spent"
    end = time.perf_counter() + INJECT
    while time.perf_counter() < end:
        with finish.lock:
            if finish.finishing:
                return
            _async_raise(finish.main_ident, budget)
            if signal.getsignal(signal.SIGALRM) is _on_alarm:
                signal.pthread_kill(finish.main_ident, signal.SIGALRM)
        time.sleep(0.02)
    finish(f"{watcher.stopped}; the script did not stop when asked (it swallowed the stop "
           "or is stuck in a call), so it was diagnosed while still running")


def _on_alarm(signum: int, frame: Any) -> None:
    from rnnlab.doctor.records import BudgetSpent

    raise BudgetSpent("time budget spent")


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    os.environ["MPLBACKEND"] = os.environ.get("MPLBACKEND", "Agg")
    if spec.get("quiet"):
        os.dup2(2, 1)  # the script's prints, even from C or a forked child, go to stderr
    from rnnlab.doctor.records import BudgetSpent
    from rnnlab.doctor.watcher import Watcher

    script = Path(spec["script"])
    sys.argv = [str(script), *spec["args"]]
    sys.path[0] = str(script.parent)
    watcher = Watcher([str(script)], max_steps=spec["max_steps"],
                      max_seconds=spec["max_seconds"])
    finish = _Finish(spec, watcher, threading.get_ident())

    def exit_now(code: int = 0) -> None:  # os._exit by the script: report, then exit
        if os.getpid() != doctor_pid:
            finish.real_exit(code)
        finish(f"the script called os._exit({code})",
               SystemExit(f"os._exit({code})") if code else None, code=0)

    doctor_pid = os.getpid()
    os._exit = exit_now
    signal.signal(signal.SIGALRM, _on_alarm)
    stopped, error = "the script finished", None
    try:
        with watcher:
            threading.Thread(target=_watchdog, args=(finish, BudgetSpent), daemon=True,
                             name="rnnlab-doctor-watchdog").start()
            runpy.run_path(str(script), run_name="__main__")
    except BudgetSpent:
        stopped = watcher.stopped or "time budget spent"
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            error, stopped = exit_, f"the script exited with {exit_.code}"
        else:
            stopped = "the script exited with 0"
    except BaseException as exc:  # the script's own error is a finding, not a doctor crash
        error, stopped = exc, f"the script raised {type(exc).__name__}"
    while True:
        try:
            finish(stopped, error)
        except BaseException:  # noqa: S112 - an injection that landed before finish began
            continue


if __name__ == "__main__":
    main(sys.argv[1])
