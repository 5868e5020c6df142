"""What the trainer's tests share: comparing parameters, and a crash at a chosen step."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.train import Callback


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class CrashAt(Callback):
    """Simulates a killed process: raises after optimiser step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, loss):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt(f"simulated crash at step {self.step}")
