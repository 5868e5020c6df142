"""Every way of training the seed 004 DigitSum models, timed side by side in one run.

    python benchmarks/run.py            # everything (about ten minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer steps, no whole-protocol JAX
    python benchmarks/run.py --full     # the slow ways for real, not extrapolated (hours)

Ways compared, all on the seed 004 protocol (DigitSum 300/100/100, embedding and
hidden 32, zero-initialised cell, Adam 1e-3, batch 8, no shuffling, dev every 100
steps; 500 epochs = 19,000 steps per model):

- ``seed loop``: the seed's hand-written cell (matmul + tanh per step), DataLoader,
  autograd and ``torch.optim.Adam``, one model at a time, one thread;
- ``torch.nn``: the same with ``torch.nn.RNN`` / ``torch.nn.LSTM``;
- ``rnnlab Trainer``: the ordinary trainer (``rnnlab memory --engine loop``);
- ``torch.compile`` of the seed model's forward and backward (``--with-compile``);
- ``JAX``: the whole run compiled with ``jit`` + ``lax.scan`` (training only; needs
  ``jax``, skipped otherwise);
- ``numba``: the C kernel's SRN algorithm written for ``numba.njit`` (training only;
  needs ``numba``, skipped otherwise);
- ``engine``: :func:`rnnlab.engine.train_population` (native C kernel; and its
  pure-PyTorch lock-step backend), everything the trainer does included.

Per-step times come from a few hundred steps of each way; whole-protocol times are
measured for the engine and JAX and, for the slow ways, extrapolated from their
per-step times at each of the 7 lengths (``--full`` runs them for real). The
default ``rnnlab memory`` is run with ``--engine fast``; ``--engine loop`` is run
on one seed for a few epochs and scaled (``--full``: the whole experiment).

The run records the CPU, its vector flags (avx512f, avx2, fma, ...), the kernel
variant that ran (``rnnlab.engine.describe()``: instruction set, vector width,
register block, compiler) and the load average, and reports the multiply-adds per
second achieved against the core's FMA peak (``--fma-units`` per cycle, 2 by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax_digitsum  # noqa: E402
import numba_srn  # noqa: E402

from rnnlab.engine import Job, train_population  # noqa: E402
from rnnlab.models import model_config_for  # noqa: E402
from rnnlab.protocols import get_protocol  # noqa: E402
from rnnlab.tasks.digitsum import DigitSum  # noqa: E402
from rnnlab.train import TrainConfig, Trainer, seeded_model  # noqa: E402

LENGTHS = (5, 10, 15, 20, 25, 30, 35)
PROTOCOL_STEPS = 19_000
NNDL = get_protocol("nndl")


def splits(length: int, seed: int = 0):
    return DigitSum(length=length).splits(seed)


# ---------------------------------------------------------------------- one model at a time
class SeedModel(nn.Module):
    """The seed's model: embedding, a hand-written cell unrolled in Python, linear head."""

    def __init__(self, cell: str, native: bool) -> None:
        super().__init__()
        self.cell, self.native = cell, native
        self.embedding = nn.Embedding(10, 32)
        nn.init.xavier_uniform_(self.embedding.weight)
        gates = 4 if cell == "lstm" else 1
        if native:
            self.rnn = (nn.LSTM if cell == "lstm" else nn.RNN)(32, 32, batch_first=True)
            for p in self.rnn.parameters():
                nn.init.zeros_(p)
        else:
            self.W = nn.Parameter(torch.zeros(32, gates * 32))
            self.U = nn.Parameter(torch.zeros(32, gates * 32))
            self.b = nn.Parameter(torch.zeros(gates * 32))
        self.head = nn.Linear(32, 19)

    def forward(self, x):
        e = self.embedding(x)
        if self.native:
            out, _ = self.rnn(e)
            return self.head(out[:, -1])
        h = torch.zeros(x.shape[0], 32)
        c = torch.zeros_like(h)
        for t in range(x.shape[1]):
            z = e[:, t] @ self.W + h @ self.U + self.b
            if self.cell == "lstm":
                i, f, g, o = z.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(z)
        return self.head(h)


def time_one_by_one(cell: str, length: int, steps: int, native: bool) -> float:
    """Seconds per step of the seed's runner loop (DataLoader, eval every 100 steps)."""
    data = splits(length)
    torch.manual_seed(0)
    model = SeedModel(cell, native)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = torch.utils.data.TensorDataset(data["train"].inputs, data["train"].targets)
    loader = torch.utils.data.DataLoader(train, batch_size=8)
    dev = data["dev"]
    step = 0
    began = time.perf_counter()
    while step < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % 100 == 0:
                with torch.no_grad():
                    model.eval()
                    F.cross_entropy(model(dev.inputs), dev.targets)
                    model.train()
            if step == steps:
                break
    return (time.perf_counter() - began) / steps


def time_compiled(cell: str, length: int, steps: int) -> tuple[float, float]:
    """(compile seconds, seconds per step) of the seed model's step under ``torch.compile``.

    Forward, loss and backward are compiled (inductor generates C++ for this CPU);
    Adam stays eager. Each new sequence length compiles again.
    """
    data = splits(length)
    torch.manual_seed(0)
    model = SeedModel(cell, native=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data["train"].inputs, data["train"].targets

    def loss_and_grad(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        return loss

    compiled = torch.compile(loss_and_grad)
    began = time.perf_counter()
    compiled(x[:8], y[:8])
    optimizer.zero_grad()
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    for s in range(steps):
        start = (s * 8) % 296
        compiled(x[start:start + 8], y[start:start + 8])
        optimizer.step()
        optimizer.zero_grad()
    return compile_seconds, (time.perf_counter() - began) / steps


def nndl_configs(cell: str, **train):
    model = model_config_for(DigitSum(length=5).spec, **{**NNDL.model, "cell": cell})
    return model, TrainConfig(**{**NNDL.train, "progress": "off", **train})


def time_trainer(cell: str, length: int, steps: int) -> float:
    data = splits(length)
    model_config, config = nndl_configs(cell, max_steps=steps)
    model = seeded_model(model_config, 0)
    began = time.perf_counter()
    Trainer(config).fit(model, data["train"], data["dev"])
    return (time.perf_counter() - began) / steps


def engine_jobs(cell: str, lengths, seeds=(0,), epochs: int | None = None) -> list[Job]:
    jobs = []
    for length in lengths:
        for seed in seeds:
            data = splits(length, seed)
            overrides = {"seed": seed} if epochs is None else {"seed": seed, "epochs": epochs}
            model_config, config = nndl_configs(cell, **overrides)
            jobs.append(Job(data["train"], data["dev"], model_config, config, test=data["test"]))
    return jobs


def time_engine(jobs: list[Job], backend: str = "kernel", workers: int = 1) -> tuple[float, int]:
    """Wall seconds for the whole population, and its total number of model-steps."""
    began = time.perf_counter()
    results = train_population(jobs, backend=backend, workers=workers)
    return time.perf_counter() - began, sum(r.steps for r in results)


def time_kernel_only(cell: str, length: int, steps: int) -> float:
    """Seconds per step of the C kernel's own training calls: no evaluation, no Python.

    Counted in CPU time of this thread (the kernel runs in it), so time the scheduler
    gives to other processes on a loaded machine is left out.
    """
    from rnnlab.engine.backends import get_backend
    from rnnlab.engine.jobs import check_supported
    from rnnlab.engine.population import _build

    (job,) = engine_jobs(cell, [length], epochs=steps // 38 + 2)
    impl = get_backend("kernel")
    (group,) = impl.group([_build(0, job, check_supported(job, 0))])
    impl.train(group, 0, 38)  # warm the caches
    best = float("inf")
    for _ in range(3):
        began = time.thread_time()
        impl.train(group, 38, 38 + steps)
        best = min(best, (time.thread_time() - began) / steps)
    return best


def fixed_batches(length: int, steps: int):
    """Tokens, labels and ``[steps, 8]`` batch rows (whole batches only, for JAX and numba)."""
    data = splits(length)
    n = len(data["train"])
    rows = (torch.arange(steps * 8) % (n - n % 8)).reshape(steps, 8).numpy()
    return data["train"].inputs.numpy(), data["train"].targets.numpy(), rows


def time_jax(cell: str, length: int, steps: int) -> tuple[float, float]:
    """(compile seconds, run seconds per step)."""
    compile_s, run_s = jax_digitsum.train(cell, *fixed_batches(length, steps))
    return compile_s, run_s / steps


def time_numba(length: int, steps: int) -> tuple[float, float]:
    """(compile seconds, run seconds per step) of the SRN loop written for numba."""
    compile_s, run_s = numba_srn.train(*fixed_batches(length, steps))
    return compile_s, run_s / steps


# ---------------------------------------------------------------------- the memory experiment
def time_memory(engine: str, **overrides) -> float:
    from rnnlab.experiments.memory import MemoryConfig, run_memory

    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        run_memory(MemoryConfig(engine=engine, **overrides), out, progress=False)
        return time.perf_counter() - began


def estimate_memory_loop(sample_epochs: int) -> float:
    """The default experiment by the loop engine, from 1 seed and ``sample_epochs`` epochs.

    Its cost is steps x time per step, so the sample is scaled by the seeds and epochs
    it left out (the report and the per-run test scoring are counted once more than
    needed, which slightly flatters the loop's estimate against nothing).
    """
    from rnnlab.experiments.memory import DEFAULT_SEEDS

    epochs = get_protocol("default").train["epochs"]
    sample = time_memory("loop", seeds=1, epochs=sample_epochs)
    return sample * DEFAULT_SEEDS * epochs / sample_epochs


# ---------------------------------------------------------------------- report
def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps; skip the whole-protocol JAX run")
    parser.add_argument("--full", action="store_true",
                        help="run the slow ways over the whole protocol instead of extrapolating")
    parser.add_argument("--skip-memory", action="store_true", help="do not run rnnlab memory")
    parser.add_argument("--with-compile", action="store_true",
                        help="also time torch.compile of the seed model (compiling takes minutes)")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument("--fma-units", type=int, default=2,
                        help="vector FMA instructions a core issues per cycle (2 on AMD Zen "
                             "and most Intel cores), for the peak multiply-add rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = 100 if args.quick else 300
    have_jax, have_numba = jax_digitsum.available(), numba_srn.available()
    compile_seconds: dict[str, float] = {}
    out: dict = {"machine": machine()}
    print(f"machine: {out['machine']}")

    # -- per model-step, SRN and LSTM at lengths 5 and 35
    per_step: dict = {}
    rows = []
    for cell in ("srn", "lstm"):
        for length in (5, 35):
            t: dict[str, float] = {}
            t["seed loop"] = time_one_by_one(cell, length, steps, native=False)
            t["torch.nn"] = time_one_by_one(cell, length, steps, native=True)
            t["rnnlab Trainer"] = time_trainer(cell, length, steps)
            if have_jax:
                compile_s, t["JAX jit+scan"] = time_jax(cell, length, 2000)
                compile_seconds[f"JAX, {cell} L={length}"] = compile_s
            if args.with_compile and cell == "srn":
                compile_s, t["torch.compile (seed model)"] = time_compiled(cell, length, steps)
                compile_seconds[f"torch.compile, {cell} L={length}"] = compile_s
            if have_numba and cell == "srn":
                compile_s, t["numba (same algorithm as the C kernel)"] = time_numba(length, 2000)
                compile_seconds[f"numba, {cell} L={length}"] = compile_s
            wall, n = time_engine(engine_jobs(cell, [length], seeds=(0, 1, 2),
                                              epochs=8 if args.quick else 24), "torch")
            t["engine, torch backend (3 in lock-step)"] = wall / n
            wall, n = time_engine(engine_jobs(cell, [length], epochs=100 if args.quick else 500))
            t["engine, native, 1 thread"] = wall / n
            per_step[f"{cell} L={length}"] = t
            for way, seconds in t.items():
                rows.append([cell, length, way, ms(seconds),
                             f"{seconds / t['engine, native, 1 thread']:.1f}x"])
    table("Time per model-step (ms), everything the protocol does included "
          "(JAX: training steps only)", ["cell", "L", "way", "ms/step", "vs engine"], rows)
    out["per_step_seconds"] = per_step
    out["near_the_hardware"] = near_the_hardware(per_step, out["machine"], args.fma_units)
    began = time.perf_counter()
    from rnnlab.engine import native

    native.load()
    compile_seconds["C kernel (cached after the first build)"] = time.perf_counter() - began
    table("Compile / build time, seconds (once per process for JAX and numba, "
          "once per machine for the kernel)", ["what", "seconds"],
          [[k, f"{v:.1f}"] for k, v in compile_seconds.items()])
    out["compile_seconds"] = compile_seconds

    # -- the whole seed 004 protocol: SRN, 7 lengths x 1 seed x 19,000 steps
    protocol: dict[str, float] = {}
    notes: dict[str, str] = {}
    for workers in (1, 2):
        wall, _ = time_engine(engine_jobs("srn", LENGTHS), workers=workers)
        protocol[f"engine, native, {workers} thread{'s' if workers > 1 else ''}"] = wall
    if have_jax and not args.quick:
        compile_total, run_total = 0.0, 0.0
        for length in LENGTHS:
            compile_s, per = time_jax("srn", length, PROTOCOL_STEPS)
            compile_total += compile_s
            run_total += per * PROTOCOL_STEPS
        protocol["JAX jit+scan (run)"] = run_total
        protocol["JAX jit+scan (run + compile)"] = run_total + compile_total
    slow = {"seed loop": lambda L, s: time_one_by_one("srn", L, s, native=False),
            "torch.nn": lambda L, s: time_one_by_one("srn", L, s, native=True),
            "rnnlab Trainer": lambda L, s: time_trainer("srn", L, s)}
    for way, fn in slow.items():
        if args.full:
            protocol[way] = sum(fn(L, PROTOCOL_STEPS) * PROTOCOL_STEPS for L in LENGTHS)
        else:
            protocol[way] = sum(fn(L, steps // 2) * PROTOCOL_STEPS for L in LENGTHS)
            notes[way] = "extrapolated"
    base = protocol["engine, native, 2 threads"]
    table("Seed 004 protocol: SRN, 7 lengths x 19,000 steps (seconds)",
          ["way", "seconds", "vs engine (2 threads)", ""],
          [[w, f"{s:.1f}", f"{s / base:.1f}x", notes.get(w, "measured")]
           for w, s in protocol.items()])
    out["protocol_seconds"] = protocol

    # -- the default rnnlab memory experiment, by each engine
    if not args.skip_memory:
        memory = {"fast": time_memory("fast")}
        how = {"fast": "measured"}
        if args.full:
            memory["loop"], how["loop"] = time_memory("loop"), "measured"
        else:
            sample_epochs = 2 if args.quick else 5
            memory["loop"] = estimate_memory_loop(sample_epochs)
            how["loop"] = f"extrapolated from 1 seed x {sample_epochs} epochs"
        table("Default `rnnlab memory` (4 cells x 7 lengths x 3 seeds), seconds",
              ["engine", "seconds", "vs fast", ""],
              [[e, f"{s:.1f}", f"{s / memory['fast']:.1f}x", how[e]]
               for e, s in memory.items()])
        out["memory_seconds"] = memory
    out["machine"]["load_after"] = os.getloadavg()[0]
    print(f"load average: {out['machine']['load_before']:.1f} before, "
          f"{out['machine']['load_after']:.1f} after")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def machine() -> dict:
    """The CPU, its vector flags, the kernel variant that runs and the load, for the record."""
    from rnnlab.engine import describe, native

    flags = set(native.cpu_flags().split())
    engine = describe("kernel")
    return {"cpu": native.cpu_name(),
            "vector_flags": " ".join(f for f in ("avx512f", "avx2", "fma", "sse4_2", "asimd")
                                     if f in flags),
            "mhz": _mhz(), "cores": os.cpu_count(),
            "kernel": {k: engine.get(k) for k in ("isa", "vector_floats", "register_block",
                                                  "compiler", "flags")},
            "python": platform.python_version(), "torch": torch.__version__,
            "load_before": os.getloadavg()[0]}


def _mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def macs_per_step(cell: str, length: int, batch: int = 8, hidden: int = 32, embed: int = 32,
                  vocab: int = 10, classes: int = 32) -> int:
    """Multiply-adds of one kernel training step (the matrix products; classes padded).

    Per time step: W_hh h forward, dL/dh back through W_hh, and the W_hh gradient; per
    step: the embedding table through W_ih and its two gradients, the head three times.
    """
    gh = (4 if cell == "lstm" else 3 if cell == "gru" else 1) * hidden
    return (3 * length * batch * hidden * gh + 3 * vocab * embed * gh
            + 3 * batch * hidden * classes)


def near_the_hardware(per_step: dict, info: dict, fma_units: int) -> dict:
    """Achieved multiply-adds per second against one core's FMA peak: the whole engine
    (1 thread, evaluations included) and the kernel's training calls alone."""
    floats = info["kernel"]["vector_floats"] or 1
    peak = fma_units * floats * (info["mhz"] or 0) * 1e6
    rows, out = [], {"peak_macs_per_second": peak}
    for key, t in per_step.items():
        cell, length = key.split(" L=")
        macs = macs_per_step(cell, int(length))
        kernel = time_kernel_only(cell, int(length), 1000)
        rates = [macs / t["engine, native, 1 thread"], macs / kernel]
        out[key] = {"macs_per_step": macs, "kernel_seconds_per_step": kernel,
                    "engine_macs_per_second": rates[0], "kernel_macs_per_second": rates[1]}
        rows.append([key, f"{macs / 1e6:.2f} M", ms(kernel),
                     *(f"{r / 1e9:.1f} G/s ({r / peak:.0%})" if peak else "?" for r in rates)])
    table(f"Near the hardware: multiply-adds per second against one core's peak, "
          f"{peak / 1e9:.1f} G/s = {fma_units} FMA x {floats} floats x {info['mhz']} MHz",
          ["model", "MACs/step", "kernel CPU ms/step", "engine (1 thread, wall)",
           "kernel alone (CPU time)"], rows)
    return out


if __name__ == "__main__":
    main()
