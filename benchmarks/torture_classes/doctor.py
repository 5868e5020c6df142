"""Hostile scripts under ``rnnlab doctor``, as far as its command line is concerned: each
must end by ``--max-seconds`` (plus start-up), leave no process behind, and exit 0 only
when it watched a healthy script to its end (a script's ``os._exit`` is its end: the
report must say the script called it)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from torture_classes.common import CLI, Tally

MAX_SECONDS = 4
# Start-up of Python, torch and the doctor on a loaded two-core machine, and its report.
SLACK = 40

TRAIN_STEP = """
import torch
model = torch.nn.RNN(2, 4, batch_first=True)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
def step():
    out, _ = model(torch.randn(3, 5, 2))
    out.pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
"""

SCRIPTS = {
    "bare except swallows the stop": TRAIN_STEP + """
import time
while True:
    try:
        step()
        time.sleep(0.01)
    except:  # noqa: E722
        pass
""",
    "ignores SIGALRM and spins": """
import signal
signal.signal(signal.SIGALRM, signal.SIG_IGN)
while True:
    pass
""",
    "stuck in a sleep": "import time\ntime.sleep(100000)\n",
    "leaves a non-daemon thread": TRAIN_STEP + """
import threading, time
threading.Thread(target=lambda: time.sleep(100000)).start()
for _ in range(3):
    step()
""",
    "forks a spinning child": TRAIN_STEP + """
import os, sys
pid = os.fork()
if pid == 0:
    open(sys.argv[1], "w").write(str(os.getpid()))
    while True:
        pass
for _ in range(3):
    step()
""",
    "calls os._exit(0)": TRAIN_STEP + "import os\nstep()\nos._exit(0)\n",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def run(tally: Tally, work: Path) -> None:
    for number, (name, body) in enumerate(SCRIPTS.items()):
        script = work / f"hostile{number}.py"
        script.write_text(textwrap.dedent(body))
        child_pid_file = work / f"child{number}.pid"
        start = time.monotonic()
        proc = subprocess.Popen([*CLI, "doctor", str(script), "--max-seconds", str(MAX_SECONDS),
                                 "--out", str(work / f"out{number}"), "--",
                                 str(child_pid_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=MAX_SECONDS + SLACK)
            seconds = time.monotonic() - start
            why = ""
        except subprocess.TimeoutExpired:
            exited = proc.poll() is not None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            seconds, err = time.monotonic() - start, ""
            why = (f"the doctor exited, but a process it left still held its output after "
                   f"{MAX_SECONDS + SLACK} s (killed)" if exited else
                   f"still running after {MAX_SECONDS + SLACK} s (killed)")
        if not why and name == "calls os._exit(0)":
            # The script ends itself there: a report that says so is owed, never a silent
            # exit 0 (exit 0 then means the doctor watched it to that end and found it well).
            findings = work / f"out{number}" / "findings.json"
            if not findings.is_file() or "os._exit" not in findings.read_text():
                why = f"exit {proc.returncode} without a report that the script called os._exit"
        if not why and "Traceback" in err:
            why = f"traceback: {err.strip()[-160:]!r}"
        if not why and child_pid_file.exists():
            pid = int(child_pid_file.read_text() or 0)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
                why = "the script's forked child outlived the doctor"
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
            why = why or "left processes behind in its group"
        except ProcessLookupError:
            pass
        tally.record(not why, f"{name} ({seconds:.0f} s, exit {proc.returncode}): {why}")
