"""The doctor is bounded: whatever the script does, it ends with a report, at the
budget, and exit 0 means only "watched and healthy" (issue 14, item 7)."""

from __future__ import annotations

import os
import time

import pytest

import rnnlab.doctor as doctor
from rnnlab.cli import main

TRAIN = """
import torch
torch.manual_seed(0)
rnn, head = torch.nn.GRU(1, 8, batch_first=True), torch.nn.Linear(8, 1)
opt = torch.optim.SGD([*rnn.parameters(), *head.parameters()], lr=0.1)
x = torch.randn(16, 10, 1)
y = x.cumsum(1)

def step():
    out, _ = rnn(x)
    loss = torch.nn.functional.mse_loss(head(out), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def _run(tmp_path, body: str, seconds: float = 20.0, steps: int = 10_000):
    script = tmp_path / "hostile.py"
    script.write_text(TRAIN + body)
    start = time.perf_counter()
    report = doctor.run_script(script, max_steps=steps, max_seconds=seconds, quiet=True)
    return report, time.perf_counter() - start


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bare_except_that_swallows_the_stop_still_ends(tmp_path):
    report, wall = _run(tmp_path, "while True:\n    try:\n        step()\n    except:\n"
                                  "        pass\n", seconds=8)
    assert "time budget" in report.stopped
    assert report.steps > 0 and "gradient-through-time" in {n.code for n in report.notes}
    assert wall < 8 + 30, wall  # start-up and diagnosis, not 2 x budget + 10 s


def test_script_that_ignores_sigalrm_and_sleeps_is_stopped(tmp_path):
    body = ("import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nstep()\n"
            "while True:\n    try:\n        time.sleep(0.05)\n    except BaseException:\n"
            "        pass\n")
    report, wall = _run(tmp_path, body, seconds=8)
    assert wall < 8 + 30, wall
    assert report.steps == 1 and "did not stop when asked" in report.stopped


def test_blocking_call_is_interrupted(tmp_path):
    report, wall = _run(tmp_path, "import time\nstep()\ntime.sleep(1000)\n", seconds=8)
    assert wall < 8 + 30, wall
    assert "time budget" in report.stopped


def test_non_daemon_thread_does_not_keep_the_doctor_waiting(tmp_path):
    body = ("import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()"
            "\nfor _ in range(5):\n    step()\n")
    report, wall = _run(tmp_path, body, seconds=20)
    assert wall < 20, wall
    assert report.stopped == "the script finished" and report.steps == 5


def test_forked_child_is_ended_with_the_script(tmp_path):
    pidfile = tmp_path / "pid"
    body = (f"import os\npid = os.fork()\nif pid == 0:\n    while True:\n        pass\n"
            f"open({str(pidfile)!r}, 'w').write(str(pid))\nfor _ in range(3):\n    step()\n")
    report, _ = _run(tmp_path, body, seconds=20)
    assert report.steps == 3
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_os_exit_before_anything_is_not_healthy(tmp_path):
    report, _ = _run(tmp_path, "import os\nos._exit(0)\n")
    assert not report.healthy
    assert "unchecked" in report.codes()
    assert "os._exit(0)" in report.stopped


def test_os_exit_with_a_code_is_a_script_error_with_the_diagnosis(tmp_path):
    report, _ = _run(tmp_path, "import os\nfor _ in range(4):\n    step()\nos._exit(3)\n",
                     seconds=30)
    assert report.codes()[0] == "script-error" and report.steps == 4
    assert "gradient-through-time" in {n.code for n in report.notes}


def test_a_process_that_kills_itself_gets_a_report(tmp_path):
    report, _ = _run(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
                     seconds=20)
    assert report.codes() == ["not-diagnosed"] and "SIGKILL" in report.stopped


def test_a_script_that_exits_0_without_training_is_not_healthy(tmp_path, capsys):
    script = tmp_path / "nothing.py"
    script.write_text("import sys\nprint('hello')\nsys.exit(0)\n")
    assert main(["doctor", str(script), "--out", str(tmp_path / "out")]) == 1
    assert "no recurrent layer or cell ran" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_max_seconds_must_be_finite_and_positive(tmp_path, capsys, value):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    assert main(["doctor", str(script), "--max-seconds", value]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--max-seconds" in err
