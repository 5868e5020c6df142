"""How a group of members takes optimiser steps: the C kernel or batched PyTorch.

A backend offers ``group(members) -> [Group]``, ``train(group, start, stop)`` (run
steps ``start..stop-1`` of every member; return each step's loss and, per member,
the first step whose loss was non-finite or -1) and ``logits(group, i, tokens,
params=None)`` (member ``i``'s logits, with its current or the given parameters).
Members' parameters and optimiser states are flat float32 vectors in the kernel
layout (:mod:`rnnlab.engine.layout`) for both backends, so everything around
them (snapshots, checkpoints) is shared.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.engine import native
from rnnlab.engine.layout import CELL_CODES, HEAD_CODES
from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.engine.population import Member

BACKENDS = ("auto", "kernel", "torch")
# The C kernel's backend was called "native" before 0.2; still accepted, but "native"
# also names torch.nn's fused layers (Recurrent(backend="native")), hence the new name.
_OLD_NAMES = {"native": "kernel"}


@dataclass
class Group:
    """Members trained together: one member (kernel) or one shape in lock-step (torch)."""

    members: list[Member]
    state: Any = None

    def cost(self) -> float:
        """Rough work (steps x length x gate rows), to start the longest groups first."""
        m = self.members[0]
        return len(self.members) * m.schedule.total_steps * m.shape.length * m.shape.gates


def kernel_dims(member: Member) -> np.ndarray:
    """The kernel's ``dims`` vector (order fixed in kernel.c)."""
    s, cfg = member.shape, member.config
    return np.array([CELL_CODES[s.cell], int(s.relu), s.vocab, s.embed_padded,
                     s.hidden_padded, s.classes, s.length, 0 if cfg.optimizer == "adam" else 1,
                     int(cfg.reduction == "sum"), HEAD_CODES[s.head], s.features],
                    dtype=np.int32)


def kernel_hyper(member: Member) -> np.ndarray:
    """The kernel's ``hyper`` vector: lr, betas, eps, weight decay, momentum, clips (0 = off)."""
    cfg = member.config
    return np.array([cfg.lr, 0.9, 0.999, 1e-8, cfg.weight_decay, cfg.momentum,
                     cfg.clip_norm or 0.0, cfg.clip_value or 0.0, cfg.clip_per_param or 0.0],
                    dtype=np.float32)


class KernelBackend:
    """Each member alone in the C kernel; members run in parallel threads."""

    name = "kernel"
    parallel = True

    def __init__(self, lib: Any) -> None:
        self.lib = lib

    def group(self, members: list[Member]) -> list[Group]:
        groups = []
        for m in members:
            if m.shape.length < 1:
                raise RnnlabError("sequences must have at least one step")
            dims = kernel_dims(m)
            # layout.py and kernel.c must agree on the flat layout, or memory is corrupted
            if self.lib.rn_num_params(native.i32(dims)) != m.shape.num_params:
                raise RuntimeError("engine kernel and layout.py disagree on the parameter layout")
            groups.append(Group([m], state=(dims, kernel_hyper(m))))
        return groups

    def train(self, group: Group, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        (m,) = group.members
        dims, hyper = group.state
        n = stop - start
        losses = np.zeros((1, n), np.float32)
        offsets = m.schedule.offsets[start:stop + 1]
        status = self.lib.rn_train(
            native.i32(dims), native.f32(hyper), native.f32(m.params), native.f32(m.exp_avg),
            native.f32(m.exp_avg_sq), native.i64(m.step), *_pair(m.inputs), *_pair(m.targets),
            native.i32(m.schedule.rows), native.i32(offsets), n, native.f32(losses))
        if status < 0:
            raise MemoryError(f"engine kernel failed with status {status}")
        failed = np.array([status - 1 if status > 0 else -1])
        return losses, failed

    def logits(self, group: Group, i: int, inputs: np.ndarray,
               params: Tensor | None = None) -> Tensor:
        """Member ``i``'s outputs on ``inputs`` (the kernel's arrays): ``(N, C)``, or
        ``(N, L, C)`` for a tag head."""
        m = group.members[i]
        dims, _ = group.state
        flat = m.params if params is None else params
        steps = (m.shape.length,) if m.shape.head == "tag" else ()
        out = torch.empty(inputs.shape[0], *steps, m.shape.classes)
        status = self.lib.rn_logits(native.i32(dims), native.f32(flat), *_pair(inputs),
                                    inputs.shape[0], native.f32(out))
        if status < 0:
            raise MemoryError(f"engine kernel failed with status {status}")
        return out


def _pair(array: np.ndarray) -> tuple[Any, Any]:
    """An int32 array as the kernel's (int pointer, no float pointer) arguments, a float32
    one as (no int pointer, float pointer): its inputs and targets come as either."""
    if array.dtype == np.float32:
        return native.i32_null(), native.f32(array)
    return native.i32(array), native.f32_null()


def get_backend(name: str = "auto") -> Any:
    """The backend called ``name``; ``auto`` is the fastest one this machine has.

    ``auto`` follows ``$RNNLAB_ENGINE_BACKEND`` when set (``kernel`` requires it
    and fails instead of falling back). Falling back to torch is said once on stderr.
    """
    info = choose(name)
    if info["backend"] == "kernel":
        return KernelBackend(native.load())
    from rnnlab.engine.torch_backend import TorchBackend

    return TorchBackend()


def describe(name: str = "auto") -> dict[str, Any]:
    """What :func:`get_backend` (``name``) runs on this machine, and why.

    Keys: ``backend`` (``kernel`` or ``torch``), ``requested``, ``reason`` (why torch
    runs, else ``None``), ``cpu``, and for the kernel its ``isa``, ``vector_floats``,
    ``register_block``, ``compiler``, ``flags``, ``library``; with ``auto``, the measured
    ``kernel_ms_per_step`` and ``torch_ms_per_step`` it chose by. Never raises for a
    missing kernel: ``reason`` says what :func:`get_backend` would raise.
    """
    try:
        return choose(name, quiet=True)
    except RnnlabError as err:
        return {"backend": None, "requested": name, "reason": str(err), "cpu": native.cpu_name()}


_SAID: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


def choose(name: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """The decision behind :func:`get_backend` and :func:`describe`."""
    name = _OLD_NAMES.get(name, name)
    if name not in BACKENDS:
        raise RnnlabError(f"unknown engine backend {name!r}; known: {', '.join(BACKENDS)}")
    requested = name
    if name == "auto":
        env = os.environ.get("RNNLAB_ENGINE_BACKEND", "").strip().lower()
        if env and _OLD_NAMES.get(env, env) not in BACKENDS:
            raise RnnlabError(f"RNNLAB_ENGINE_BACKEND={env!r} is not an engine backend; "
                              f"use one of {', '.join(BACKENDS)}")
        requested = _OLD_NAMES.get(env, env) or "auto"
    info: dict[str, Any] = {"backend": "torch", "requested": requested, "reason": None,
                            "cpu": native.cpu_name()}
    if requested == "torch":
        info["reason"] = "the torch backend was asked for"
        return info
    lib = native.load()
    if lib is None:
        why = native.why_unavailable()
        if requested == "kernel":
            raise RnnlabError(f"the engine's C kernel is not available ({why}); install a C "
                              "compiler (gcc) or use the torch backend")
        info["reason"] = f"the C kernel could not be built: {why}"
        if not quiet:
            _say_once(f"rnnlab: the engine's C kernel could not be built ({why}); training "
                      "with the PyTorch backend, 10-50x slower. Install gcc (apt-get install "
                      "gcc) for the kernel, or set RNNLAB_ENGINE_BACKEND=torch to choose "
                      "this backend.")
        return info
    info.update(native.build_info())
    if requested == "auto":
        from rnnlab.engine.calibrate import speeds

        kernel, torch_ms = speeds()
        info.update(kernel_ms_per_step=kernel, torch_ms_per_step=torch_ms)
        if kernel > torch_ms:
            info["reason"] = (f"the C kernel ({info['isa']}) measured slower than the torch "
                              f"backend here ({kernel:.3f} vs {torch_ms:.3f} ms per step)")
            if not quiet:
                _say_once(f"rnnlab: {info['reason']}; using torch. "
                          "RNNLAB_ENGINE_BACKEND=kernel forces the kernel.")
            return info
    info["backend"] = "kernel"
    return info
