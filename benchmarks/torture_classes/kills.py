"""SIGKILL ``train`` and ``memory`` at random moments; every resumed run must equal an
uninterrupted one bit for bit, with no torn file and no temporary left behind."""

from __future__ import annotations

import csv
import random
import time
from pathlib import Path

import torch

from torture_classes.common import Tally, rnnlab, start, temporaries

TRAIN = ["train", "digitsum", "--length", "6", "--hidden", "8", "--embedding", "8",
         "--epochs", "4", "--eval-every", "5", "--quiet"]
GRID = ["memory", "--cells", "srn,gru", "--lengths", "5,7", "--seeds", "2",
        "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1",
        "--hidden", "8", "--embedding", "8", "--epochs", "4",
        "--eval-every", "5"]


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for k in sorted(value, key=repr) for t in _tensors(value[k])]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def same_checkpoint(a: Path, b: Path) -> bool:
    """Same parameters, optimiser state and position (``seconds`` may differ)."""
    x, y = (torch.load(p, weights_only=True) for p in (a, b))
    keys = ("model", "optimizer", "best_model", "step", "epoch", "best_score", "history")
    for key in keys:
        tx, ty = _tensors(x.get(key)), _tensors(y.get(key))
        if len(tx) != len(ty) or not all(torch.equal(p, q) for p, q in zip(tx, ty, strict=True)):
            return False
        if not tx and x.get(key) != y.get(key):
            return False
    return True


def same_train_run(ref: Path, out: Path) -> str:
    """Empty when ``out`` equals ``ref``; else what differs."""
    if (ref / "metrics.csv").read_bytes() != (out / "metrics.csv").read_bytes():
        return "metrics.csv differs"
    for name in ("last.pt", "best.pt"):
        if not same_checkpoint(ref / name, out / name):
            return f"{name} differs"
    if temporaries(out):
        return f"temporaries left: {temporaries(out)}"
    if (out / ".rnnlab.lock").exists():
        return "lock file left after a clean exit"
    return ""


def _rows(path: Path) -> list[tuple]:
    with open(path, newline="") as f:
        return sorted((r["config_hash"], r["status"], r["best_dev_score"], r["test_score"],
                       r["steps"]) for r in csv.DictReader(f))


def same_memory_run(ref: Path, out: Path) -> str:
    if _rows(ref / "results.csv") != _rows(out / "results.csv"):
        return "results.csv rows differ"
    for run in (ref / "runs").iterdir():
        if not same_checkpoint(run / "last.pt", out / "runs" / run.name / "last.pt"):
            return f"{run.name}/last.pt differs"
    if not (out / "report.html").exists():
        return "no report"
    if temporaries(out):
        return f"temporaries left: {temporaries(out)}"
    return ""


def _killed(args: list[str], rng: random.Random, lifetime: float) -> bool:
    """Start ``rnnlab ARGS``, SIGKILL it at a random moment; whether it was still running."""
    proc = start(*args)
    time.sleep(rng.uniform(0.0, lifetime))
    alive = proc.poll() is None
    if alive:
        proc.kill()
    proc.communicate()
    return alive


def _trial(tally: Tally, args: list[str], ref: Path, out: Path, rng: random.Random,
           lifetime: float, kills: int, compare) -> None:
    done = 0
    for _ in range(kills * 3):  # a kill that comes after the end does not count
        if done == kills:
            break
        done += _killed(args, rng, lifetime)
    final = rnnlab(*args)
    why = (f"final rerun exit {final.returncode}: {final.stderr.strip()[-200:]}"
           if final.returncode != 0 else compare(ref, out))
    for _ in range(done):
        tally.record(not why, f"{' '.join(args[:2])} killed {done}x, {out.name}: {why}")


def run(tally: Tally, work: Path, rng: random.Random, *, train_kills: int,
        memory_kills: int) -> None:
    ref = work / "train-ref"
    t0 = time.monotonic()
    assert rnnlab(*TRAIN, "--out", ref).returncode == 0
    lifetime = time.monotonic() - t0
    trial = 0
    while tally.tried < train_kills:
        out = work / f"train-{trial}"
        _trial(tally, [*TRAIN, "--out", str(out), "--resume"], ref, out, rng, lifetime,
               min(2, train_kills - tally.tried), same_train_run)
        trial += 1
    for engine in ("loop", "fast"):
        ref = work / f"memory-ref-{engine}"
        t0 = time.monotonic()
        assert rnnlab(*GRID, "--engine", engine, "--out", ref).returncode == 0
        lifetime = time.monotonic() - t0
        target = train_kills + memory_kills * (1 if engine == "loop" else 2) // 2
        while tally.tried < target:
            out = work / f"memory-{engine}-{trial}"
            _trial(tally, [*GRID, "--engine", engine, "--out", str(out)], ref, out, rng,
                   lifetime, min(2, target - tally.tried), same_memory_run)
            trial += 1
