"""A user's own module on the DigitSum grid: generic lock-step path against the loop trainer.

    python benchmarks/generic_lockstep.py              # 3 seeds x lengths 5..35, 5 epochs
    python benchmarks/generic_lockstep.py --epochs 2   # quicker
    python benchmarks/generic_lockstep.py --lrs 1e-3,3e-3,1e-2   # a grid: 9 copies a group

Two models a user would write: an ``nn.LSTM`` classifier (embedding 32, hidden 32,
last state -> linear) and a model that is not recurrent at all (the embedded sequence
flattened into a two-layer MLP). Each is trained at every length and seed of the
default memory grid (seed 004 DigitSum, 300/100/100 examples, Adam 1e-3, batch 32,
dev once per epoch) three ways, in the same process, one after the other:

- ``loop``: :class:`rnnlab.train.Trainer`, one run after another;
- ``vmap``: :func:`rnnlab.engine.generic.fit_many` forced onto the vmap path (the 3
  seeds of a length, times the learning rates of ``--lrs``, train together; lengths
  cannot share a group, their shapes differ);
- ``auto``: ``fit_many`` choosing per group by a timed first step.

Printed: wall seconds of each, the ratios, which path ``auto`` took, and the largest
difference in test accuracy between the loop and the lock-step runs (they follow the
same contract, so it should be 0 or one example's worth from float rounding). One
thread, as the trainer uses; the CPU is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from rnnlab.engine.generic import Copy, fit_many
from rnnlab.seeding import seed_everything
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_outputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 32)
        self.lstm = nn.LSTM(32, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embed(x))
        return self.out(h[-1])


class FlatMLP(nn.Module):
    def __init__(self, vocab_size: int, num_outputs: int, length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 16)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16 * length, 64), nn.ReLU(),
                                 nn.Linear(64, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(x))


def builders(name: str, length: int):
    if name == "nn.LSTM classifier":
        return lambda: LSTMClassifier(10, 19)
    return lambda: FlatMLP(10, 19, length)


def cpu() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    vector = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    return f"{model} ({', '.join(vector) or 'no avx2/avx512f/fma'})"


def measure(model: str, lengths: list[int], seeds: int, lrs: list[float],
            config: TrainConfig) -> dict:
    splits = {(n, s): get_task("digitsum", length=n).splits(s)
              for n in lengths for s in range(seeds)}
    jobs = [((model, n), builders(model, n), config.replace(lr=lr),
             Copy(s, splits[n, s]["train"], splits[n, s]["dev"], splits[n, s]["test"]))
            for n in lengths for s in range(seeds) for lr in lrs]
    warm = [(key, build, cfg.replace(max_steps=2), copy) for key, build, cfg, copy in jobs[:2]]
    fit_many(warm, path="loop")  # first calls pay one-time costs: not the loop's fault
    fit_many(warm, path="vmap")
    start = time.perf_counter()
    loop = []
    for _, build, cfg, copy in jobs:
        seed_everything(copy.seed)
        loop.append(Trainer(cfg.replace(seed=copy.seed)).fit(build(), copy.train, copy.dev,
                                                             copy.test))
    loop_s = time.perf_counter() - start
    timings, notes, gaps = {"loop": loop_s}, {}, {}
    for path in ("vmap", "auto"):
        start = time.perf_counter()
        results, _, notes[path] = fit_many(jobs, path=path)
        timings[path] = time.perf_counter() - start
        gaps[path] = max(abs(a.test["accuracy"] - b.test["accuracy"]) for a, b in
                         zip(results, loop, strict=True))
    return {"model": model, "runs": len(jobs), "seconds": {k: round(v, 2) for k, v in
                                                           timings.items()},
            "speedup_vmap": round(loop_s / timings["vmap"], 2),
            "speedup_auto": round(loop_s / timings["auto"], 2),
            "max_test_accuracy_gap": gaps, "auto_paths": notes["auto"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lengths", default="5,10,15,20,25,30,35")
    parser.add_argument("--lrs", default="1e-3", help="learning rates (a grid multiplies runs)")
    parser.add_argument("--models", default="nn.LSTM classifier,flat MLP")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lengths = [int(n) for n in args.lengths.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, progress="off", threads=1)
    report = {"cpu": cpu(), "torch": torch.__version__, "epochs": args.epochs,
              "lengths": lengths, "seeds": args.seeds, "lrs": lrs, "models": []}
    print(f"CPU: {report['cpu']}; torch {torch.__version__}; 1 thread; DigitSum lengths "
          f"{lengths}, {args.seeds} seeds x lr {lrs}, {args.epochs} epochs of 10 steps")
    for model in args.models.split(","):
        row = measure(model, lengths, args.seeds, lrs, config)
        report["models"].append(row)
        s = row["seconds"]
        print(f"{model:<20} loop {s['loop']:7.2f} s  vmap {s['vmap']:7.2f} s "
              f"({row['speedup_vmap']:.2f}x)  auto {s['auto']:7.2f} s ({row['speedup_auto']:.2f}x)"
              f"  max |test acc gap| {row['max_test_accuracy_gap']}")
        for note in row["auto_paths"]:
            print(f"    auto: {note}")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
