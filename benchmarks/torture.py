"""Torture rnnlab as a demanding user would, and count what held.

Classes (issue 14): SIGKILLs of ``train`` and ``memory`` at random moments, each
resumed to the end and compared with an uninterrupted run; two processes on one
``--out``; a disk that fills (a real 1 MB tmpfs when this process may mount one,
else a simulated ``ENOSPC``) and a read-only folder; ~120 bad command lines; hostile
checkpoints; hostile doctor scripts. Prints one table: class, tried, held, failed,
then each failure in one line.

    python benchmarks/torture.py                    # everything
    python benchmarks/torture.py --quick            # fewer kills and races
    python benchmarks/torture.py --only inputs,checkpoints

Exit code 0 when every row held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from torture_classes import checkpoints, concurrency, disk, doctor, kills  # noqa: E402
from torture_classes.common import CLI, Tally, one_line  # noqa: E402
from torture_inputs import command_lines  # noqa: E402


def bad_inputs(tally: Tally, work: Path, fixtures: dict[str, Path], show: bool) -> None:
    """Each bad command line, in this process (a process per line would take ten
    minutes here): exit 2, one line, no traceback, within a minute."""
    from rnnlab.cli import main

    def alarm(*_: object) -> None:
        raise TimeoutError("still running after 60 s")

    signal.signal(signal.SIGALRM, alarm)
    for number, argv in enumerate(command_lines()):
        out = work / f"out{number}"
        args = [str(fixtures[a]) if a in fixtures else
                a.replace("RUN", str(fixtures["RUN"])).replace("DATA", str(fixtures["DATA"]))
                if a.startswith(("RUN/", "DATA/")) else a for a in argv]
        args = [str(out) if a == "OUT" else a for a in args]
        err = io.StringIO()
        signal.alarm(60)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(args)
        except BaseException as exc:  # a traceback the user would have seen
            code, err = -1, io.StringIO(f"Traceback: {type(exc).__name__}: {exc}")
        finally:
            signal.alarm(0)
        text = err.getvalue()
        if show:
            print(f"  exit {code}: rnnlab {' '.join(argv)}\n      {text.strip()[-200:]}",
                  file=sys.stderr)
        tally.record(code == 2 and one_line(text),
                     f"rnnlab {' '.join(argv)} -> exit {code}: {text.strip()[-160:]!r}")


def fixtures_for(work: Path) -> dict[str, Path]:
    """A finished tiny run, DigitSum data folders with one defect each, a bad sequence file."""
    run = work / "run"
    subprocess.run([*CLI, "train", "digitsum", "--length", "5", "--hidden", "8", "--embedding",
                    "8", "--max-steps", "20", "--out", str(run), "--quiet"], check=True)
    data = work / "data"
    good = "3 4 0 0 0\t7\n1 1 0 5 0\t2\n"
    defects = {"short_row": good + "5\t5\n", "bad_label": good + "1 2 0 0 0\t4\n",
               "not_utf8": None, "bad_digit": good + "1 x 0 0 0\t1\n",
               "no_tab": good + "1 2 0 0 0 3\n"}
    for name, text in defects.items():
        folder = data / name
        folder.mkdir(parents=True)
        for split in ("train", "dev", "test"):
            path = folder / f"{split}.txt"
            if text is None:
                path.write_bytes(b"\xff\xfe\x00bad")
            else:
                path.write_text(text if split == "train" else good)
    (data / "empty").mkdir()
    bad_file = work / "sequences.txt"
    bad_file.write_text("3 4 0\n3 x 0\n")
    script = work / "script.py"
    script.write_text("print('hello')\n")
    return {"RUN": run, "DATA": data, "FILE": bad_file, "SCRIPT": script}


CLASSES = ("kills", "concurrency", "disk", "inputs", "checkpoints", "doctor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer kills and races")
    parser.add_argument("--only", default=",".join(CLASSES),
                        help=f"comma-separated classes among {', '.join(CLASSES)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--show", action="store_true", help="print every bad input's line")
    opts = parser.parse_args()
    chosen = [c.strip() for c in opts.only.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CLASSES))
    if unknown:
        parser.error(f"unknown class(es) {', '.join(unknown)}")
    rng = random.Random(opts.seed)
    work = Path(tempfile.mkdtemp(prefix="rnnlab-torture-"))
    scale = 1 if opts.quick else 3
    tallies: list[Tally] = []
    start = time.monotonic()
    try:
        fixtures = fixtures_for(work) if {"inputs", "checkpoints"} & set(chosen) else {}
        for name in chosen:
            tally = Tally(name)
            tallies.append(tally)
            where = work / name
            where.mkdir()
            t0 = time.monotonic()
            if name == "kills":
                kills.run(tally, where, rng, train_kills=8 * scale, memory_kills=4 * scale)
            elif name == "concurrency":
                concurrency.run(tally, where, races=2 * scale)
            elif name == "disk":
                disk.run(tally, where)
            elif name == "inputs":
                bad_inputs(tally, where, fixtures, opts.show)
            elif name == "checkpoints":
                checkpoints.run(tally, where, fixtures["RUN"])
            elif name == "doctor":
                doctor.run(tally, where)
            print(f"  {name}: {tally.held}/{tally.tried} held in {time.monotonic() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'class':<13}{'tried':>7}{'held':>7}{'failed':>8}")
    for t in tallies:
        print(f"{t.name:<13}{t.tried:>7}{t.held:>7}{t.tried - t.held:>8}")
    total = sum(t.tried for t in tallies), sum(t.held for t in tallies)
    print(f"{'total':<13}{total[0]:>7}{total[1]:>7}{total[0] - total[1]:>8}")
    print(f"({time.monotonic() - start:.0f} s)")
    for t in tallies:
        for failure in t.failures:
            print(f"FAILED {t.name}: {failure}")
    return 0 if total[0] == total[1] else 1


if __name__ == "__main__":
    sys.exit(main())
