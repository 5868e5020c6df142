"""Time of the memory suite (issue 12): 4 built-in cells x 5 tasks x their default lengths.

A measurement, not a test. The full default suite (3 seeds, the default protocol's 100
epochs) takes far longer than this machine can spare for a benchmark, so this runs
the same grid with fewer epochs and seeds, once with the default engine and once with
``--engine loop``, and extrapolates to the full suite by steps (time per optimiser
step is what repeats; the extrapolation is printed and said to be one). It also
reports the peak resident memory of the process, and seconds per run against the
memory axis (from ``results.csv``), up to length 200 with ``--long``.

    python benchmarks/memory_suite.py                       # epochs 1, seeds 1
    python benchmarks/memory_suite.py --epochs 2 --seeds 3
    python benchmarks/memory_suite.py --user-only --epochs 5   # a user's nn.LSTM model

``--user-only`` times a user's own ``nn.LSTM`` classifier (written as a user would, in
a file, given with ``--model``) on the DigitSum default grid (7 lengths x 3 seeds):
the default engine (generic lock-step path, ``auto``) against ``--engine loop``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from rnnlab.experiments import MemoryConfig, run_memory
from rnnlab.experiments.grid import DEFAULT_CELLS
from rnnlab.io import read_csv
from rnnlab.protocols import get_protocol

TASKS = ("digitsum", "copy", "adding", "selective-copy", "associative-recall")
USER_MODEL = """
from torch import nn


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, num_outputs):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 32)
        self.lstm = nn.LSTM(32, 32, batch_first=True)
        self.out = nn.Linear(32, num_outputs)

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return self.out(h[-1])


def build(vocab_size, num_outputs):
    return LSTMClassifier(vocab_size, num_outputs)
"""


def user_model(tmp: Path, epochs: int) -> dict:
    """A user's LSTM file on the DigitSum default grid: generic path against the loop."""
    (tmp / "user_model.py").write_text(USER_MODEL)
    out = {}
    for engine in ("fast", "loop"):
        config = MemoryConfig(cells=(), models={"mine": f"{tmp / 'user_model.py'}:build"},
                              epochs=epochs, engine=engine)
        seconds, rows = timed(config, tmp / f"user-{engine}")
        out[engine] = {"runs": len(rows), "seconds": round(seconds, 1),
                       "paths": sorted({r["path"] for r in rows})}
        print(f"user nn.LSTM on DigitSum, {engine}: {len(rows)} runs in {seconds:.1f} s "
              f"({out[engine]['paths']})", flush=True)
    return out


def cpu() -> str:
    """The CPU model and its vector flags, as every speed figure must state."""
    name, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name.strip():
                name = line.split(":", 1)[1].strip()
            elif line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vector = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    return f"{name} ({', '.join(vector) or 'no avx'}), {os.cpu_count()} cores"


def timed(config: MemoryConfig, out: Path) -> tuple[float, list[dict[str, str]]]:
    start = time.perf_counter()
    run_memory(config, out, progress=False)
    return time.perf_counter() - start, read_csv(out / "results.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--long", action="store_true",
                        help="also time one LSTM on copy at lengths 50, 100, 200")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--user-only", action="store_true",
                        help="only time a user's nn.LSTM module on the DigitSum grid")
    args = parser.parse_args()
    protocol = get_protocol("default").train
    full_runs = sum(len(MemoryConfig(tasks=(t,)).lengths_for(t)) for t in TASKS) \
        * len(DEFAULT_CELLS) * 3
    report: dict = {"cpu": cpu(), "python": platform.python_version(),
                    "epochs": args.epochs, "seeds": args.seeds, "full_suite_runs": full_runs,
                    "full_suite_epochs": protocol["epochs"]}
    scale = (protocol["epochs"] / args.epochs) * (3 / args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        if args.user_only:
            report["user_model_digitsum"] = user_model(Path(tmp), args.epochs)
        for engine in () if args.user_only else ("fast", "loop"):
            config = MemoryConfig(tasks=TASKS, seeds=args.seeds, epochs=args.epochs,
                                  engine=engine)
            seconds, rows = timed(config, Path(tmp) / engine)
            by_task: dict[str, float] = {}
            for r in rows:
                by_task[r["task"]] = by_task.get(r["task"], 0.0) + float(r["seconds"])
            report[engine] = {"runs": len(rows), "seconds": round(seconds, 1),
                              "extrapolated_full_suite_minutes": round(seconds * scale / 60, 1),
                              "run_seconds_by_task": {k: round(v, 1) for k, v in by_task.items()},
                              "paths": sorted({f"{r['engine']}/{r['path']}" for r in rows})}
            print(f"{engine}: {len(rows)} runs in {seconds:.1f} s; the full suite "
                  f"({full_runs} runs, {protocol['epochs']} epochs) extrapolated by steps: "
                  f"{seconds * scale / 60:.1f} min", flush=True)
        if args.long and not args.user_only:
            config = MemoryConfig(cells=("lstm",), tasks=("copy",), lengths=(50, 100, 200),
                                  seeds=args.seeds, epochs=args.epochs)
            _, rows = timed(config, Path(tmp) / "long")
            report["copy_lstm_seconds_by_length"] = {r["length"]: float(r["seconds"])
                                                     for r in rows}
            print("LSTM on copy, seconds per run by delay:",
                  report["copy_lstm_seconds_by_length"], flush=True)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak resident memory: {report['peak_rss_mib']} MiB; CPU: {report['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
