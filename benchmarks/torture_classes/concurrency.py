"""Two processes, one ``--out``: one works, the other is refused in one line naming the
holder (or, if they did not overlap, both finish); never a lost or duplicated row."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

from torture_classes.common import Tally, one_line, rnnlab, start

BASE = ["memory", "--seeds", "2",
        "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1",
        "--hidden", "8", "--embedding", "8", "--epochs", "3", "--eval-every", "5",
        "--engine", "loop"]
GRID_A = [*BASE, "--cells", "srn,gru", "--lengths", "5,7"]
GRID_B = [*BASE, "--cells", "lstm", "--lengths", "5,6,7"]
RUNS = {"A": 8, "B": 6}
TRAIN = ["train", "digitsum", "--length", "6", "--hidden", "8", "--embedding", "8",
         "--epochs", "3", "--quiet"]


def _hashes(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row["config_hash"] for row in csv.DictReader(f)]


def _refused(proc_result: tuple[int, str]) -> bool:
    code, err = proc_result
    return code == 2 and one_line(err) and "in use by another rnnlab process" in err \
        and "pid " in err


def _race(tally: Tally, out: Path, first: list[str], second: list[str], label: str,
          alone: tuple[int, int], both: int) -> None:
    """Start both at once. ``alone[i]``: the rows when only process ``i`` ran; ``both``:
    the rows when they did not overlap and both finished, one after the other."""
    procs = [start(*first, "--out", out), start(*second, "--out", out)]
    results = [(p.wait(timeout=900), p.communicate()[1]) for p in procs]
    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    losers = [i for i in range(2) if i not in winners]
    hashes = _hashes(out / "results.csv")
    want = both if len(winners) == 2 else alone[winners[0]] if winners else None
    why = ""
    if want is None:
        why = f"neither finished: {[r[1].strip()[-120:] for r in results]}"
    elif not all(_refused(results[i]) for i in losers):
        why = f"not refused in one line: {[results[i][1].strip()[-160:] for i in losers]}"
    elif len(hashes) != len(set(hashes)):
        why = "duplicate rows"
    elif len(hashes) != want:
        why = f"{len(hashes)} rows, expected {want}"
    tally.record(not why, f"{label}: {why}")


def run(tally: Tally, work: Path, *, races: int) -> None:
    for i in range(races):
        _race(tally, work / f"diff-{i}", GRID_A, GRID_B, "two grids, one --out",
              (RUNS["A"], RUNS["B"]), RUNS["A"] + RUNS["B"])
        _race(tally, work / f"same-{i}", GRID_A, GRID_A, "one grid twice",
              (RUNS["A"], RUNS["A"]), RUNS["A"])
        out = work / f"train-{i}"
        procs = [start(*TRAIN, "--out", out), start(*TRAIN, "--out", out)]
        results = [(p.wait(timeout=900), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in results)
        loser = next((err for code, err in results if code != 0), "")
        # A second train after the first finished is refused too ("already holds a run").
        held = codes == [0, 2] and one_line(loser) and (out / "summary.json").exists()
        tally.record(held, f"two trains, one --out: exits {codes}, {loser.strip()[-160:]!r}")
    # A holder killed with SIGKILL leaves no lock behind: the next process goes ahead.
    out = work / "stale"
    holder = start(*GRID_A, "--out", out)
    time.sleep(6)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    after = rnnlab(*GRID_A, "--out", out)
    tally.record(after.returncode == 0 and len(_hashes(out / "results.csv")) == RUNS["A"],
                 f"after a killed holder: exit {after.returncode} {after.stderr[-160:]!r}")
