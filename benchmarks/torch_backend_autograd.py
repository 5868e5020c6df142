"""The engine's pure-PyTorch backend: hand-written BPTT against autograd, in one run.

    OMP_NUM_THREADS=1 python benchmarks/torch_backend_autograd.py

Both run the same forward (the cells' update functions on stacked weights); one
takes the gradient with the backend's hand-written backward pass, the other with
``torch.autograd.grad``. Seed 004's protocol (DigitSum, hidden 32, Adam 1e-3, batch
8), 3 epochs, SRN/LSTM/GRU, lengths 10 and 30, groups of 1 and 5 members; the best
of 3 repetitions, in ms per optimiser step (evaluation included). The backend keeps
the hand-written pass while autograd is slower (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import time

import torch

import rnnlab.engine.population as population
import rnnlab.engine.torch_backend as tb
from rnnlab.engine import Job
from rnnlab.models import ModelConfig
from rnnlab.protocols import get_protocol
from rnnlab.tasks.digitsum import DigitSum
from rnnlab.train import TrainConfig

NNDL = get_protocol("nndl")
EPOCHS = 3


class AutogradState(tb._GroupState):
    """The backend's group state with the gradient from autograd instead of by hand."""

    def step(self, s: int) -> torch.Tensor:
        sched = self.members[0].schedule
        lo, hi = int(sched.offsets[s]), int(sched.offsets[s + 1])
        rows = torch.stack([torch.from_numpy(m.schedule.rows[lo:hi]).long()
                            for m in self.members])
        x, y = self.tokens[self.arange, rows], self.labels[self.arange, rows]
        leaf = self.params.detach().requires_grad_()
        logits, _ = tb._forward(self.shape, tb._unpack(self.shape, leaf), x)
        picked = torch.log_softmax(logits, dim=-1).gather(2, y.unsqueeze(2)).squeeze(2)
        losses = -picked.sum(1) if self.sum_reduction else -picked.mean(1)
        (self.grad,) = torch.autograd.grad(losses.sum(), leaf)
        self._clip()
        with torch.no_grad():
            self._update()
        return losses.detach()


class AutogradBackend(tb.TorchBackend):
    def group(self, members):
        groups = super().group(members)
        for group in groups:
            state = group.state = AutogradState(group.members)
            for i, m in enumerate(group.members):
                m.params, m.exp_avg = state.params[i], state.exp_avg[i]
                m.exp_avg_sq = state.exp_avg_sq[i]
        return groups


def jobs(cell: str, length: int, members: int) -> list[Job]:
    out = []
    for seed in range(members):
        task = DigitSum(length=length, k_train=3, k_dev=1, k_test=1)
        splits = task.splits(seed)
        model = ModelConfig(**{"vocab_size": 10, "num_outputs": task.num_outputs,
                               **NNDL.model, "cell": cell})
        train = TrainConfig(**{**NNDL.train, "epochs": EPOCHS, "seed": seed,
                               "progress": "off"})
        out.append(Job(splits["train"], splits["dev"], model, train))
    return out


def timed(impl: tb.TorchBackend, work: list[Job]) -> float:
    population.get_backend = lambda name="auto": impl
    started = time.perf_counter()
    population.train_population(work, backend="torch")
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(1)
    cpu = next(line for line in open("/proc/cpuinfo") if line.startswith("model name"))
    print("cpu:", cpu.split(":", 1)[1].strip())
    impls = {"hand": tb.TorchBackend, "autograd": AutogradBackend}
    steps = EPOCHS * 38  # 300 examples in batches of 8
    for cell in ("srn", "lstm", "gru"):
        for length in (10, 30):
            for members in (1, 5):
                best = {name: min(timed(cls(), jobs(cell, length, members)) for _ in range(3))
                        for name, cls in impls.items()}
                times = "  ".join(f"{k} {1e3 * v / steps:6.2f}" for k, v in best.items())
                print(f"{cell:5s} L={length:2d} M={members}: {times} ms/step | "
                      f"autograd/hand {best['autograd'] / best['hand']:.2f}", flush=True)


if __name__ == "__main__":
    main()
