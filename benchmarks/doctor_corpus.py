"""Run the doctor's corpus (tests/fixtures/doctor, each script with the verdict it must
get) and print the detection rate, the false-alarm rate and the doctor's overhead.

Every script runs twice, to its own end: alone (``python SCRIPT``) and under
``rnnlab doctor`` with budgets it never reaches, so both do the same work. The
overhead is the doctor's wall time over the script's, and is split into the child's
start-up, the script under the hooks, the diagnosis and the plots.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_corpus.py [--out FILE] [NAMES...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnlab.doctor import run_script
from rnnlab.doctor.corpus import cases, score, verdict
from rnnlab.io import atomic_write_json

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "doctor"


def _alone(script: Path, args: tuple[str, ...]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), *args], check=True, cwd=script.parent,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _python_with_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def markdown(rows: list[dict], summary: dict) -> str:
    """The corpus table of docs/doctor.md."""
    lines = ["| script | must get | the doctor says | alone | under the doctor |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['case']}` | {r['expect']} | {r['got']}"
                     f"{'' if r['ok'] else ' **(wrong)**'} | {r['alone_s']:.1f} s | "
                     f"{r['doctor_s']:.1f} s |")
    lines.append(f"| **all {len(rows)}** | {summary['buggy']} bugs, {summary['clean']} correct "
                 f"| detection {summary['detection_rate']:.0%}, false alarms "
                 f"{summary['false_alarm_rate']:.0%} | {summary['alone_s']:.0f} s | "
                 f"{summary['doctor_s']:.0f} s ({summary['overhead']:.2f}x) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only the cases whose label has one of these")
    parser.add_argument("--out", default="benchmarks/results/doctor_corpus.json")
    opts = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    flags = Path("/proc/cpuinfo").read_text()
    vector = [f for f in ("avx512f", "avx2", "fma") if f" {f}" in flags]
    print(f"CPU: {cpu} ({', '.join(vector) or 'no avx'}), torch threads from OMP_NUM_THREADS")
    start_up = min(_python_with_torch() for _ in range(3))
    rows = []
    for case in cases(CORPUS):
        if opts.names and not any(n in case.label for n in opts.names):
            continue
        alone = _alone(case.script, case.args)
        with tempfile.TemporaryDirectory() as out:
            report = run_script(case.script, list(case.args), max_steps=100_000,
                                max_seconds=600, out=out, quiet=True)
        row = {**verdict(case, report), "alone_s": round(alone, 2),
               "doctor_s": round(report.wall_seconds, 2), "steps": report.steps,
               **{f"{k}_s": v for k, v in report.timings.items()}}
        rows.append(row)
        print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']:34s} {row['expect']:30s} "
              f"got {row['got']:30s} {alone:6.2f} s alone, {report.wall_seconds:6.2f} s "
              f"under the doctor ({report.wall_seconds / alone:.2f}x)", flush=True)
    summary = score(rows)
    alone = sum(r["alone_s"] for r in rows)
    doctor = sum(r["doctor_s"] for r in rows)
    work = sum(max(r["alone_s"] - start_up, 1e-3) for r in rows)
    parts = {k: sum(r.get(f"{k}_s", 0.0) for r in rows)
             for k in ("doctor_start", "script", "diagnosis", "plots")}
    summary.update(alone_s=round(alone, 2), doctor_s=round(doctor, 2),
                   overhead=round(doctor / alone, 2), python_torch_start_s=round(start_up, 2),
                   hooks_overhead=round(parts["script"] / work, 2),
                   **{f"{k}_s": round(v, 2) for k, v in parts.items()})
    print(f"\ndetection rate {summary['detected']}/{summary['buggy']} = "
          f"{summary['detection_rate']:.0%}; false alarms {summary['false_alarms']}/"
          f"{summary['clean']} = {summary['false_alarm_rate']:.0%}")
    print(f"time: {alone:.1f} s alone, {doctor:.1f} s under the doctor "
          f"({summary['overhead']:.2f}x); python+torch start-up {start_up:.2f} s per run")
    print(f"under the doctor: start-up {parts['doctor_start']:.1f} s, the scripts under the "
          f"hooks {parts['script']:.1f} s (their own work alone: {work:.1f} s, "
          f"{summary['hooks_overhead']:.2f}x), diagnosis {parts['diagnosis']:.1f} s, "
          f"plots {parts['plots']:.1f} s")
    print("\n" + markdown(rows, summary) + "\n")
    atomic_write_json(opts.out, {"cpu": cpu, "vector": vector, "summary": summary,
                                 "rows": rows})
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
