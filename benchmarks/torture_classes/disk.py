"""A disk that fills and a folder that cannot be written: one line, exit 2, nothing saved
damaged, and the same command finishes the work once there is room.

Uses a real 1 MB tmpfs when this process may mount one (root, Linux); otherwise a
simulated ``ENOSPC`` (``os.fsync`` raising it after a few writes) in a child process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from torture_classes.common import Tally, one_line, rnnlab, temporaries

GRID = ["memory", "--cells", "srn,lstm", "--lengths", "5,7", "--seeds", "2",
        "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1",
        "--hidden", "48", "--embedding", "8", "--epochs", "2", "--eval-every", "5",
        "--engine", "loop"]
TRAIN = ["train", "digitsum", "--length", "5", "--hidden", "160", "--embedding", "8",
         "--max-steps", "20", "--eval-every", "5", "--quiet"]
FULL = ("No space left on device", "nothing already saved was damaged")

SIMULATED = """
import errno, os, sys
from rnnlab.cli import main
real, calls = os.fsync, [0]
def fsync(fd):
    calls[0] += 1
    if calls[0] > 12:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(fd)
os.fsync = fsync
sys.exit(main(sys.argv[1:]))
"""


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def _intact(folder: Path) -> str:
    """Every results file and checkpoint left in ``folder`` reads back whole."""
    from rnnlab.errors import RnnlabError
    from rnnlab.experiments import load_results
    from rnnlab.train import load_checkpoint

    try:
        if (folder / "results.csv").exists():
            load_results(folder / "results.csv")
        for path in folder.rglob("*.pt"):
            load_checkpoint(path)
    except RnnlabError as err:
        return f"damaged: {err}"
    return f"temporaries left: {temporaries(folder)}" if temporaries(folder) else ""


def _fill_then_finish(tally: Tally, args: list[str], small: Path, big: Path, label: str,
                      again: list[str]) -> None:
    """Run into the small disk, expect the one-line refusal, then move the folder to a
    roomy disk and rerun: it must finish."""
    first = rnnlab(*args, "--out", small)
    why = ""
    if first.returncode != 2 or not one_line(first.stderr) or \
            not all(words in first.stderr for words in FULL):
        why = f"exit {first.returncode}: {first.stderr.strip()[-200:]!r}"
    else:
        why = _intact(small)
    if not why:
        shutil.copytree(small, big)
        second = rnnlab(*args, *again, "--out", big)
        if second.returncode != 0:
            why = f"after moving to a roomy disk: exit {second.returncode} " \
                  f"{second.stderr.strip()[-200:]!r}"
    tally.record(not why, f"{label}: {why}")


def run(tally: Tally, work: Path) -> None:
    small = work / "small"
    if not _mount(small, "size=1m"):
        print("  disk: cannot mount a tmpfs here; simulating ENOSPC", file=sys.stderr)
        for args in (GRID, TRAIN):
            res = subprocess.run([sys.executable, "-c", SIMULATED, *args, "--out",
                                  str(work / args[0])], capture_output=True, text=True)
            held = res.returncode == 2 and one_line(res.stderr) and FULL[0] in res.stderr
            tally.record(held and not _intact(work / args[0]),
                         f"simulated ENOSPC in {args[0]}: {res.stderr.strip()[-200:]!r}")
        return
    try:
        _fill_then_finish(tally, GRID, small / "m", work / "big-m", "memory on a full disk", [])
        shutil.rmtree(small / "m")
        _fill_then_finish(tally, TRAIN, small / "t", work / "big-t", "train on a full disk",
                          ["--resume"])
        shutil.rmtree(small / "t")
        (small / "existing").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True)
        for args in (GRID, TRAIN):
            for out in (small / "existing", small / "new"):
                res = rnnlab(*args, "--out", out)
                tally.record(res.returncode == 2 and one_line(res.stderr),
                             f"{args[0]} into read-only {out.name}: exit {res.returncode} "
                             f"{res.stderr.strip()[-200:]!r}")
    finally:
        _umount(small)
