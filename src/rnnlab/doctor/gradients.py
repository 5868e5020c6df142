"""Gradients through time, measured: the experiments of NNDL chapter 6 (seed 004).

- :func:`run_explosion` (NNDL 6.2): an SRN on DigitSum trained with plain SGD at a
  large learning rate and a *summed* loss, the L2 norm of the gradients of ``W``
  (``weight_ih``), ``U`` (``weight_hh``) and ``b`` logged at every step; then the same
  run with each parameter's gradient norm clipped (``TrainConfig.clip_per_param``).
- :func:`run_vanishing`: ``|dL/dh_t|`` against ``t`` for every cell at one length, on
  one DigitSum batch at initialisation, where the loss sits at the last step only.
  It is the doctor's own measurement (:func:`rnnlab.doctor.check`).
- :func:`run_gates` (NNDL 6.3): the input, forget and output gates of an LSTM trained
  on DigitSum, over one test sequence.

Every run writes PNG plots and CSV/JSON numbers; the configuration (a frozen
dataclass) and its seed go into the JSON.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

from rnnlab.doctor import plots
from rnnlab.errors import ensure
from rnnlab.io import atomic_write_bytes, atomic_write_json, write_csv
from rnnlab.seeding import seed_everything
from rnnlab.tasks.digitsum import DigitSum


def _digitsum_model(task: DigitSum, cell: str, hidden: int, embedding: int, init: str,
                    seed: int, backend: str = "python") -> nn.Module:
    from rnnlab.cells import get_cell
    from rnnlab.models import build_model, model_config_for

    if get_cell(cell).native is None:
        backend = "python"  # the residual SRN has no torch twin
    seed_everything(seed)
    return build_model(model_config_for(task.spec, cell=cell, hidden_size=hidden,
                                        embedding_dim=embedding, init=init, backend=backend))


@dataclass(frozen=True)
class TrainingSetup:
    """How the gate and trained-gradient experiments train: the memory experiment's
    careful recipe (1,000 training examples, shuffled batches of 32, Adam 3e-3,
    global-norm clipping at 1). The chapter's own (300 examples, batch 8, Adam 1e-3)
    leaves an LSTM at chance for far longer than these experiments should run."""

    epochs: int = 60
    k_train: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    clip_norm: float = 1.0


def _train(model: nn.Module, task_length: int, setup: TrainingSetup, seed: int) -> tuple[Any, Any]:
    """Train on DigitSum with ``setup``; returns the trainer and the splits."""
    from rnnlab.train import TrainConfig, Trainer

    splits = DigitSum(length=task_length, k_train=setup.k_train).splits(seed)
    trainer = Trainer(TrainConfig(epochs=setup.epochs, batch_size=setup.batch_size,
                                  lr=setup.lr, clip_norm=setup.clip_norm, seed=seed,
                                  progress="off", checkpoints="none"))
    trainer.fit(model, splits["train"], dev=splits["dev"])
    return trainer, splits


def _parameter(model: nn.Module, suffix: str) -> nn.Parameter:
    """The first recurrent parameter whose name ends with ``suffix`` (``weight_hh``...)."""
    for name, p in model.named_parameters():
        if name.endswith(suffix) or name.endswith(suffix + "_l0"):
            return p
    raise LookupError(f"the model has no parameter named *{suffix}")


# --- explosion (NNDL 6.2) -------------------------------------------------------------
@dataclass(frozen=True)
class ExplosionConfig:
    """The NNDL 6.2 gradient-explosion protocol.

    ``W``, ``U`` and ``b`` are zero-initialised as in the chapter's SRN; SGD with a
    large ``lr`` on a loss summed over the batch makes updates big enough to explode.
    """

    length: int = 20
    hidden_size: int = 32
    embedding_dim: int = 32
    init: str = "zeros"
    lr: float = 0.2
    batch_size: int = 64
    epochs: int = 50
    clip: float = 5.0
    seed: int = 0


_SRN_PARAMS = {"W": "weight_ih", "U": "weight_hh", "b": "bias_ih"}


def train_logging_gradients(config: ExplosionConfig, clip: float | None) -> dict[str, Any]:
    """One SGD run; the gradient norms of W, U and b at every step, before clipping
    (``raw``) and as applied by the optimizer (``applied``)."""
    from rnnlab.train import TrainConfig, Trainer

    task = DigitSum(length=config.length)
    splits = task.splits(config.seed)
    model = _digitsum_model(task, "srn", config.hidden_size, config.embedding_dim,
                            config.init, config.seed)
    params = {k: _parameter(model, v) for k, v in _SRN_PARAMS.items()}
    rows: list[dict[str, Any]] = []
    raw: dict[str, float] = {}

    def keep(name: str):
        def hook(grad: Tensor) -> None:  # the gradient as backward computed it
            raw[name] = float(grad.detach().double().norm())
        return hook

    handles = [p.register_hook(keep(k)) for k, p in params.items()]

    def pre_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        row: dict[str, Any] = {"step": len(rows)}
        for k, p in params.items():
            row[k] = raw.get(k, math.nan)
            row[f"{k}_applied"] = float(p.grad.detach().double().norm())
        rows.append(row)

    train_config = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer="sgd",
        reduction="sum", clip_per_param=clip, seed=config.seed, progress="off",
        stop_on_nonfinite=False, checkpoints="none", restore_best=False)
    trainer = Trainer(train_config)
    step_hook = register_optimizer_step_pre_hook(pre_step)
    try:
        result = trainer.fit(model, splits["train"], dev=splits["dev"])
    finally:
        step_hook.remove()
        for h in handles:
            h.remove()
    losses = [r.get("train_loss") for r in result.history if r.get("train_loss") is not None]
    test = trainer.evaluate(model, splits["test"])
    finite = [max(r[k] for k in _SRN_PARAMS) for r in rows if all(
        math.isfinite(r[k]) for k in _SRN_PARAMS)]
    return {
        "clip": clip, "rows": rows,
        "max_norm": max(finite) if finite else math.nan,
        "max_norm_applied": max(max(r[f"{k}_applied"] for k in _SRN_PARAMS) for r in rows),
        "nonfinite_steps": len(rows) - len(finite),
        "final_loss": losses[-1] if losses else math.nan,
        "test_accuracy": test.get("accuracy", math.nan),
    }


def run_explosion(config: ExplosionConfig = ExplosionConfig(),
                  out: str | os.PathLike | None = None) -> dict[str, Any]:
    """The unclipped and the clipped run; writes ``explosion.csv``, ``explosion.json``
    and ``explosion.png`` to ``out``."""
    ensure(config.clip > 0, f"--clip must be positive, got {config.clip}")
    ensure(config.epochs >= 1, f"--epochs must be at least 1, got {config.epochs}")
    runs = {"unclipped": train_logging_gradients(config, None),
            f"clipped at {config.clip:g}": train_logging_gradients(config, config.clip)}
    result = {"config": asdict(config),
              "runs": {name: {k: v for k, v in run.items() if k != "rows"}
                       for name, run in runs.items()}}
    if out is not None:
        out = Path(out)
        rows = [{"run": name, **row} for name, run in runs.items() for row in run["rows"]]
        fields = ["run", "step", *_SRN_PARAMS, *(f"{k}_applied" for k in _SRN_PARAMS)]
        write_csv(out / "explosion.csv", fields, rows)
        atomic_write_json(out / "explosion.json", result)
        atomic_write_bytes(out / "explosion.png", plots.explosion(
            {name: (run["rows"], run["clip"]) for name, run in runs.items()}, list(_SRN_PARAMS)))
    return result


# --- vanishing --------------------------------------------------------------------------
@dataclass(frozen=True)
class VanishingConfig:
    """``|dL/dh_t|`` by cell, at initialisation (torch's default initialiser) and,
    with ``train_epochs``, again after training on DigitSum by :class:`TrainingSetup`: what a
    cell does with its gradient once it has learned to remember is the point of the
    gated cells."""

    cells: tuple[str, ...] = ("srn", "residual-srn", "lstm", "gru")
    length: int = 50
    hidden_size: int = 32
    embedding_dim: int = 32
    init: str = "torch"
    batch: int = 100
    train_epochs: int = 0
    seed: int = 0


def state_gradient_profile(model: nn.Module, inputs: Tensor, targets: Tensor) -> list[float]:
    """The doctor's ``|dL/dh_t|`` for ``model`` on one batch (loss at the last step)."""
    from rnnlab.doctor import check as doctor_check

    report = doctor_check(model, (inputs, targets), F.cross_entropy)
    profiles = report.series.get("state_gradients") or []
    ensure(bool(profiles), f"could not read the state gradients of {type(model).__name__}")
    return profiles[0]["norms"]


def _profiles(cell: str, config: VanishingConfig) -> dict[str, Any]:
    task = DigitSum(length=config.length)
    model = _digitsum_model(task, cell, config.hidden_size, config.embedding_dim,
                            config.init, config.seed, backend="native")
    test = task.splits(config.seed)["test"]
    inputs, targets = test.inputs[:config.batch], test.targets[:config.batch]
    row: dict[str, Any] = {"init": state_gradient_profile(model, inputs, targets)}
    if config.train_epochs > 0:
        trainer, splits = _train(model, config.length, TrainingSetup(epochs=config.train_epochs),
                                 config.seed)
        row["trained"] = state_gradient_profile(model, inputs, targets)
        row["test_accuracy"] = trainer.evaluate(model, splits["test"])["accuracy"]
    return row


def run_vanishing(config: VanishingConfig = VanishingConfig(),
                  out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Writes ``vanishing.csv`` (stage, cell, t, norm), ``vanishing.json`` and
    ``vanishing.png`` (and ``vanishing_trained.png`` after training)."""
    ensure(config.length >= 3, f"--length must be at least 3, got {config.length}")
    rows = {cell: _profiles(cell, config) for cell in config.cells}
    result: dict[str, Any] = {"config": asdict(config), "cells": {}}
    for cell, row in rows.items():
        entry: dict[str, Any] = {}
        for stage in ("init", "trained"):
            if stage in row:
                norms = row[stage]
                entry[stage] = {"first": norms[0], "last": norms[-1],
                                "ratio": norms[0] / norms[-1] if norms[-1] > 0 else math.nan,
                                "norms": norms}
        if "test_accuracy" in row:
            entry["test_accuracy"] = row["test_accuracy"]
        result["cells"][cell] = entry
    if out is not None:
        out = Path(out)
        csv_rows = [{"stage": stage, "cell": cell, "t": t, "norm": v}
                    for cell, row in rows.items() for stage in ("init", "trained")
                    if stage in row for t, v in enumerate(row[stage])]
        write_csv(out / "vanishing.csv", ["stage", "cell", "t", "norm"], csv_rows)
        atomic_write_json(out / "vanishing.json", result)
        atomic_write_bytes(out / "vanishing.png", plots.norms_by_cell(
            {cell: row["init"] for cell, row in rows.items()},
            f"|dL/dh_t| at initialisation, DigitSum length {config.length}"))
        if config.train_epochs > 0:
            atomic_write_bytes(out / "vanishing_trained.png", plots.norms_by_cell(
                {f"{cell} (test acc {row['test_accuracy']:.2f})": row["trained"]
                 for cell, row in rows.items()},
                f"|dL/dh_t| after {config.train_epochs} epochs, DigitSum length "
                f"{config.length}"))
    return result


# --- LSTM gates (NNDL 6.3) ---------------------------------------------------------------
@dataclass(frozen=True)
class GatesConfig:
    """An LSTM trained on DigitSum by :class:`TrainingSetup`, then its gates on one sequence."""

    length: int = 20
    hidden_size: int = 32
    embedding_dim: int = 32
    epochs: int = 60
    seed: int = 0
    sequence: int | None = None  # None: the first test sequence with a noise digit


class _Activations(TorchFunctionMode):
    """Records the outputs of ``torch.sigmoid`` and ``torch.tanh`` in call order, so the
    gates are read from the cell's own recurrence instead of a second copy of it."""

    def __init__(self) -> None:
        super().__init__()
        self.sigmoid: list[Tensor] = []
        self.tanh: list[Tensor] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.sigmoid:
            self.sigmoid.append(out)
        elif func is torch.tanh:
            self.tanh.append(out)
        return out


def lstm_gates(weights: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """Gate activations ``i, f, g, o`` and states over a sequence ``x [L, H_in]``.

    The sequence runs through :func:`rnnlab.cells.lstm.lstm_step` (weights in torch's
    layout), which applies ``sigmoid`` to ``i, f, o`` and ``tanh`` to ``g`` and then
    to ``c`` at every step; the gates are those activations, recorded as it computes
    them.
    """
    from rnnlab.cells.lstm import lstm_step

    hidden = weights["weight_hh"].shape[1]
    h = c = x.new_zeros(1, hidden)
    out: dict[str, list[Tensor]] = {k: [] for k in ("i", "f", "g", "o", "h", "c")}
    for t in range(x.shape[0]):
        with _Activations() as seen:
            h, c = lstm_step(x[t:t + 1], (h, c), weights["weight_ih"], weights["weight_hh"],
                             weights.get("bias_ih"), weights.get("bias_hh"))
        (i, f, o), (g, _) = seen.sigmoid, seen.tanh
        for k, v in zip("ifgohc", (i, f, g, o, h, c), strict=True):
            out[k].append(v[0])
    return {k: torch.stack(v, dim=1) for k, v in out.items()}  # [H, L]


def lstm_weights(model: nn.Module) -> dict[str, Tensor]:
    """The first LSTM layer's weights, from an rnnlab cell or a ``torch.nn.LSTM``."""
    from rnnlab.cells.lstm import LSTM as LSTMCell

    for m in model.modules():
        if isinstance(m, LSTMCell):
            return {k: getattr(m, k).detach() for k in ("weight_ih", "weight_hh", "bias_ih",
                                                        "bias_hh") if getattr(m, k) is not None}
        if isinstance(m, nn.LSTM):
            return {k: getattr(m, f"{k}_l0").detach() for k in ("weight_ih", "weight_hh",
                                                                "bias_ih", "bias_hh")
                    if hasattr(m, f"{k}_l0")}
    raise LookupError("the model has no LSTM")


def run_gates(config: GatesConfig = GatesConfig(),
              out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train, then write ``gates.png`` (heat maps), ``gates.csv`` and ``gates.json``."""
    task = DigitSum(length=config.length)
    model = _digitsum_model(task, "lstm", config.hidden_size, config.embedding_dim, "torch",
                            config.seed, backend="native")
    trainer, splits = _train(model, config.length, TrainingSetup(epochs=config.epochs), config.seed)
    test = splits["test"]
    accuracy = trainer.evaluate(model, test)["accuracy"]
    index = config.sequence if config.sequence is not None else _telling_sequence(test.inputs)
    ensure(0 <= index < len(test), f"--example must lie in 0..{len(test) - 1}, got {index}")
    tokens = test.inputs[index]
    embedded = _lstm_input(model, tokens.unsqueeze(0))[0]
    with torch.no_grad():
        gates = lstm_gates(lstm_weights(model), embedded)
    shown = {"input gate i": gates["i"], "forget gate f": gates["f"],
             "output gate o": gates["o"]}
    result = {"config": asdict(config), "accuracy": accuracy, "sequence": index,
              "label": int(test.targets[index]), "tokens": tokens.tolist(),
              "mean": {name: gate.mean(0).tolist() for name, gate in shown.items()}}
    if out is not None:
        out = Path(out)
        rows = [{"t": t, "token": int(tokens[t]), "gate": name[-1], "unit": u,
                 "value": float(gate[u, t])}
                for name, gate in shown.items() for u in range(gate.shape[0])
                for t in range(gate.shape[1])]
        write_csv(out / "gates.csv", ["t", "token", "gate", "unit", "value"], rows)
        atomic_write_json(out / "gates.json", result)
        atomic_write_bytes(out / "gates.png", plots.gate_heatmap(
            {k: v.numpy() for k, v in shown.items()}, [str(int(d)) for d in tokens],
            f"LSTM gates on a DigitSum sequence (label {result['label']}, "
            f"test accuracy {accuracy:.2f})"))
    return result


def _telling_sequence(inputs: Tensor) -> int:
    """The first sequence whose two digits and noise digit are all nonzero: the gates
    have something to open for at the start and something to ignore later."""
    telling = (inputs[:, 0] > 0) & (inputs[:, 1] > 0) & (inputs[:, 2:] > 0).any(dim=1)
    found = telling.nonzero()
    return int(found[0, 0]) if len(found) else 0


def _lstm_input(model: nn.Module, tokens: Tensor) -> Tensor:
    """What the model's recurrent layer receives for ``tokens`` (the embeddings)."""
    from rnnlab.doctor.records import is_recurrent

    seen: list[Tensor] = []

    def hook(module: nn.Module, args: tuple) -> None:
        if not seen:
            seen.append(args[0].detach())

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if is_recurrent(m)]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(tokens)
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    ensure(bool(seen), "the model has no recurrent layer to read the gates of")
    return seen[0]
