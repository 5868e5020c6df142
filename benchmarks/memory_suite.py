"""Time of the memory suite (issue 12): 4 built-in cells x 5 tasks x their default lengths.

A measurement, not a test.

    python benchmarks/memory_suite.py --full                # the issue's target
    python benchmarks/memory_suite.py --epochs 2 --seeds 3  # quicker, extrapolated
    python benchmarks/memory_suite.py --long                # time and memory by length
    python benchmarks/memory_suite.py --user-only --epochs 5   # a user's own models

``--full`` runs the full default suite (3 seeds, the default protocol's 100 epochs) with
the default engine and times it, then ``--engine loop`` on the same grid at
``--loop-epochs`` (1) and extrapolates that to the protocol by steps (run time x
epochs ratio, plus the once-paid data, baselines and report), said to be an
extrapolation. Without ``--full`` both engines run at ``--epochs``/``--seeds`` and both
are extrapolated. ``--long`` trains one LSTM on copy at delays 25, 50, 100 and 200 at the
full protocol, each in its own process, and reports its seconds and peak resident memory.
Every figure is printed with the CPU and its vector flags.

``--user-only`` times two models a user would write in a file and give with ``--model``
(an ``nn.LSTM`` classifier and a flat MLP, not recurrent at all) on the DigitSum default
grid (7 lengths x 3 seeds): ``--engine loop`` (the trainer, one run at a time), then the
default engine (the generic lock-step path) in one process and in worker processes
(``$RNNLAB_WORKERS``, default the CPUs), all in the same run after a warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnlab.engine.population import WORKERS_ENV
from rnnlab.experiments import MemoryConfig, run_memory
from rnnlab.experiments.grid import DEFAULT_CELLS
from rnnlab.experiments.runners import get_runner
from rnnlab.io import read_csv
from rnnlab.protocols import get_protocol

TASKS = ("digitsum", "copy", "adding", "selective-copy", "associative-recall")
USER_MODELS = {
    "nn.LSTM classifier": """
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
""",
    "flat MLP": """
from torch import nn


def build(vocab_size, num_outputs, length):
    return nn.Sequential(nn.Embedding(vocab_size, 16), nn.Flatten(),
                         nn.Linear(16 * length, 64), nn.ReLU(), nn.Linear(64, num_outputs))
""",
}
# The ways a user's model is timed: the loop trainer one run at a time (the reference),
# and the default engine in one process and in the default number of worker processes.
# The loop is timed first and last, and its mean is the reference, so a machine that
# gets busier or quieter during the run favours neither side.
USER_WAYS = (("loop", "loop", "1"), ("fast, 1 process", "fast", "1"),
             ("fast", "fast", ""), ("loop, again", "loop", "1"))


def user_models(tmp: Path, epochs: int) -> dict:
    """Each user model file on the DigitSum default grid, the same run: the loop trainer
    against the default engine (generic lock-step path), in one and in worker processes.
    Time is split into training (the runner) and the rest (checks, report)."""
    out: dict = {}
    for index, (label, source) in enumerate(USER_MODELS.items()):
        path = tmp / f"user_model_{index}.py"
        path.write_text(source)
        models = {"mine": f"{path}:build"}
        # One tiny run first, so no engine pays the imports and first calls.
        warm = MemoryConfig(cells=(), models=models, epochs=1, lengths=(5,), seeds=2)
        timed(warm, tmp / f"warm-{index}")
        rows_by_way: dict = {}
        for way, engine, workers in USER_WAYS:
            os.environ[WORKERS_ENV] = workers or str(len(os.sched_getaffinity(0)))
            config = MemoryConfig(cells=(), models=models, epochs=epochs, engine=engine)
            seconds, rows, training = timed(config, tmp / f"user-{index}-{len(rows_by_way)}")
            rows_by_way[way] = rows
            out.setdefault(label, {})[way] = {
                "runs": len(rows), "seconds": round(seconds, 1),
                "training_seconds": round(training, 1), "workers": os.environ[WORKERS_ENV],
                "paths": sorted({r["path"] for r in rows})}
            print(f"user {label} on DigitSum, {way}: {len(rows)} runs in {seconds:.1f} s "
                  f"(training {training:.1f} s; {out[label][way]['paths']})", flush=True)
        os.environ.pop(WORKERS_ENV, None)
        loops = [out[label]["loop"], out[label]["loop, again"]]
        seconds = sum(x["seconds"] for x in loops) / 2
        training = sum(x["training_seconds"] for x in loops) / 2
        for figures in out[label].values():
            figures["speedup_vs_loop"] = round(seconds / figures["seconds"], 2)
            figures["training_speedup_vs_loop"] = round(training / figures["training_seconds"], 2)
        print(f"user {label}: fast against the mean of the two loop runs: "
              f"{out[label]['fast']['speedup_vs_loop']}x in all, "
              f"{out[label]['fast']['training_speedup_vs_loop']}x in training", flush=True)
        gap = max(abs(float(a["test_score"]) - float(b["test_score"]))
                  for a, b in zip(sorted(rows_by_way["loop"], key=lambda r: r["config_hash"]),
                                  sorted(rows_by_way["fast"], key=lambda r: r["config_hash"]),
                                  strict=True))
        out[label]["max_test_accuracy_gap_fast_vs_loop"] = gap
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


def timed(config: MemoryConfig, out: Path) -> tuple[float, list[dict[str, str]], float]:
    """Wall seconds of the experiment, its rows, and the seconds spent training (in the
    runner; the rest is checking the models, the summary and the report)."""
    inner = get_runner(config.engine)
    training = 0.0

    def runner(specs, runs_dir):
        nonlocal training
        start = time.perf_counter()
        for result in inner(specs, runs_dir):
            training += time.perf_counter() - start
            yield result
            start = time.perf_counter()
        training += time.perf_counter() - start

    start = time.perf_counter()
    run_memory(config, out, progress=False, runner=runner)
    return time.perf_counter() - start, read_csv(out / "results.csv"), training


def suite(tmp: Path, engine: str, epochs: int, seeds: int, full_epochs: int) -> dict:
    """The suite's grid on one engine; its time extrapolated to ``full_epochs`` by steps."""
    config = MemoryConfig(tasks=TASKS, seeds=seeds, epochs=epochs, engine=engine)
    seconds, rows, training = timed(config, tmp / f"{engine}-{epochs}")
    by_task: dict[str, float] = {}
    for r in rows:
        by_task[r["task"]] = by_task.get(r["task"], 0.0) + float(r["seconds"])
    fixed = seconds - training  # data, baselines, report: paid once
    scale = (full_epochs / epochs) * (3 / seeds)
    result = {"runs": len(rows), "epochs": epochs, "seeds": seeds, "seconds": round(seconds, 1),
              "training_seconds": round(training, 1),
              "run_seconds_by_task": {k: round(v, 1) for k, v in by_task.items()},
              "paths": sorted({f"{r['engine']}/{r['path']}" for r in rows})}
    if scale != 1:
        result["extrapolated_full_suite_seconds"] = round(fixed + training * scale, 1)
    said = (f"{engine}: {len(rows)} runs at {epochs} epochs, {seeds} seeds in {seconds:.1f} s"
            f" ({training:.1f} s of it training)")
    if scale != 1:
        said += (f"; the full suite extrapolated by steps: "
                 f"{result['extrapolated_full_suite_seconds'] / 60:.1f} min")
    print(said, flush=True)
    return result


# Runs the CLI in a fresh interpreter and prints that process's own peak resident memory
# (VmHWM: counted for its own address space, not the forking parent's).
_CHILD = """
import sys
from pathlib import Path
from rnnlab.cli import main
code = main(sys.argv[1:])
peak = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
print(peak[0].split()[1] if peak else "")
sys.exit(code)
"""


def long_runs(tmp: Path) -> dict:
    """One LSTM on copy at growing delays, each in its own process: seconds and peak memory."""
    out = {}
    for delay in (25, 50, 100, 200):
        folder = tmp / f"long-{delay}"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, "memory", "--cells", "lstm",
                               "--tasks", "copy", "--lengths", str(delay), "--seeds", "1",
                               "--quiet", "--out", str(folder)],
                              check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        (row,) = read_csv(folder / "results.csv")
        out[delay] = {"run_seconds": float(row["seconds"]), "process_seconds": round(wall, 1),
                      "peak_rss_mib": round(int(last) / 1024) if last.isdigit() else None,
                      "test_score": float(row["test_score"])}
        print(f"LSTM on copy, delay {delay}: {out[delay]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="run the full default suite (100 epochs, 3 seeds) and time it")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--loop-epochs", type=int, default=1,
                        help="epochs of the --engine loop run that --full extrapolates")
    parser.add_argument("--long", action="store_true",
                        help="time one LSTM on copy at delays 25, 50, 100, 200 (full protocol)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--user-only", action="store_true",
                        help="only time a user's own modules on the DigitSum grid")
    args = parser.parse_args()
    full_epochs = get_protocol("default").train["epochs"]
    full_runs = sum(len(MemoryConfig(tasks=(t,)).lengths_for(t)) for t in TASKS) \
        * len(DEFAULT_CELLS) * 3
    report: dict = {"cpu": cpu(), "python": platform.python_version(),
                    "load_at_start": os.getloadavg(), "full_suite_runs": full_runs,
                    "full_suite_epochs": full_epochs}
    with tempfile.TemporaryDirectory() as tmp:
        if args.user_only:
            report["user_models_digitsum"] = user_models(Path(tmp), args.epochs)
        elif args.full:
            report["fast"] = suite(Path(tmp), "fast", full_epochs, 3, full_epochs)
            report["loop"] = suite(Path(tmp), "loop", args.loop_epochs, 3, full_epochs)
        else:
            for engine in ("fast", "loop"):
                report[engine] = suite(Path(tmp), engine, args.epochs, args.seeds, full_epochs)
        if args.long and not args.user_only:
            report["copy_lstm_by_delay"] = long_runs(Path(tmp))
    report["load_at_end"] = os.getloadavg()
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak resident memory of this process: {report['peak_rss_mib']} MiB; "
          f"CPU: {report['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
