"""Recipe ``sin-cos`` (seed 002, regression): read sin, say cos, chunk after chunk.

The seed walks along one sine wave in chunks of 10 points, chunk ``k`` covering
``[k*pi, (k+1)*pi]``, and trains an RNN with 32 hidden units and a linear read-out
on each chunk in turn (Adam 0.02, MSE, 100 chunks), carrying the hidden state from
one chunk to the next so that the network knows which half-period it is in.

(The code printed in the seed builds an ``nn.LSTM`` and drops the returned state,
``prediction, _ = rnn(x, h_state)``, while its text and the tutorial it comes from
use ``nn.RNN(32)`` and carry the state; ``cell=lstm`` and ``carry_state=false``
reproduce the printed variant.)

This recipe trains rnnlab's SRN that way, then continues along the wave for
``eval_chunks`` new chunks and measures the MSE twice: with the state carried (as
trained) and with a fresh state for every chunk, which shows what the carried
state is worth: at a chunk's first point ``sin`` is 0 and ``cos`` is +1 or -1, and
only the past says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnnlab.io import write_csv
from rnnlab.models import model_config_for
from rnnlab.recipes.common import (
    INPUT_COLOUR,
    MODEL_COLOURS,
    TARGET_COLOUR,
    RecipeResult,
    figure,
    finish,
    save_figure,
    start,
)
from rnnlab.report.markdown import table
from rnnlab.tasks.base import SplitData
from rnnlab.tasks.sin_cos import SinCos
from rnnlab.train import TrainConfig, Trainer, seeded_model
from rnnlab.train.stateful import as_streams

SEED_REPORT = "prediction follows cos after 100 chunks (plot only)"


@dataclass(frozen=True)
class Settings:
    """The seed's hyper-parameters (``eval_chunks`` and ``backend`` are rnnlab's)."""

    time_step: int = 10  # points per chunk
    hidden_size: int = 32
    cell: str = "srn"  # nn.RNN in the tutorial
    carry_state: bool = True
    lr: float = 0.02
    chunks: int = 100  # training steps, one chunk each
    eval_chunks: int = 20
    seed: int = 1  # torch.manual_seed(1)
    backend: str = "python"


FAST = {"chunks": 60, "eval_chunks": 10}


def run(out: Path, fast: bool = False, **overrides: Any) -> RecipeResult:
    settings, out, watch = start(Settings, fast, FAST, overrides, out)
    task = SinCos(length=settings.time_step)
    baseline = task.memoryless_baseline(task.splits(seed=settings.seed))
    stream = task.stream(settings.chunks + settings.eval_chunks)
    train = SplitData(stream.inputs[:settings.chunks], stream.targets[:settings.chunks])
    held_out = SplitData(stream.inputs[settings.chunks:], stream.targets[settings.chunks:])
    model, trainer, history = _train(out, settings, task, train)
    along, carried, fresh = _predict(settings, model, trainer.carried_state, train, held_out)
    carried_mse = float(F.mse_loss(carried, held_out.targets))
    fresh_mse = float(F.mse_loss(fresh, held_out.targets))
    _plot(out, settings, stream, along, carried, fresh)
    result = RecipeResult(
        name="sin-cos", out=out, model=f"{settings.cell}, state carried",
        metric="mse", score=carried_mse, baseline=baseline,
        chance=task.chance, seconds=watch.seconds,
        numbers={"eval_mse_state_carried": round(carried_mse, 6),
                 "eval_mse_fresh_state": round(fresh_mse, 6),
                 "last_train_loss": history[-1]["loss"]})
    return finish(result, settings, fast, _readme(settings, result, fresh_mse))


def _config(settings: Settings, **changes: Any) -> TrainConfig:
    """Training and prediction alike go one chunk of ``time_step`` points at a time."""
    return TrainConfig(**{"epochs": 1, "lr": settings.lr, "eval_every": 1, "seed": settings.seed,
                          "progress": "off", "checkpoints": "last", "tbptt": settings.time_step,
                          **changes})


def _train(out: Path, settings: Settings, task: SinCos,
           train: SplitData) -> tuple[torch.nn.Module, Trainer, list[dict[str, Any]]]:
    """Train on the chunks in order; write ``metrics.csv`` (the loss per chunk)."""
    config = model_config_for(task.spec, cell=settings.cell, hidden_size=settings.hidden_size,
                              backend=settings.backend)
    model = seeded_model(config, settings.seed)
    # Carried: the chunks are one stream, trained chunk by chunk by the stateful trainer.
    # Not carried (the seed's printed code): each chunk is a sequence of its own, in order.
    if settings.carry_state:
        trainer, data = Trainer(_config(settings)), as_streams(train)
    else:
        trainer = Trainer(_config(settings, tbptt=None, batch_size=1, shuffle=False))
        data = train
    fitted = trainer.fit(model, data, out_dir=out / "run")
    history = [{"chunk": r["step"], "loss": round(r["train_loss"], 6)} for r in fitted.history]
    write_csv(out / "metrics.csv", ["chunk", "loss"], history)
    return model, trainer, history


def _predict(settings: Settings, model: torch.nn.Module, start_state: Any, train: SplitData,
             held_out: SplitData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along the training stream, then the new chunks with the state carried and fresh.

    Prediction runs chunk by chunk whatever the training was; ``start_state`` is where
    training left the state (None when it was not carried).
    """
    streaming = Trainer(_config(settings))
    along, _ = streaming.predict_stream(model, as_streams(train).inputs)
    carried, _ = streaming.predict_stream(model, as_streams(held_out).inputs, start_state)
    fresh, _ = streaming.predict_stream(model, as_streams(held_out).inputs, carry=False)
    shape = held_out.targets.shape
    return along, carried.reshape(shape), fresh.reshape(shape)


def _readme(settings: Settings, result: RecipeResult, fresh_mse: float) -> str:
    carried_mse, baseline = result.score, result.baseline
    rows = [
        (f"{settings.eval_chunks} new chunks, state carried (as trained)", carried_mse),
        ("the same chunks, a fresh state for each", fresh_mse),
        ("memoryless baseline (best linear map of sin t)", baseline),
        ("chance (always 0)", result.chance),
    ]
    carrying = ("the state carried (detached) from each chunk to the next"
                if settings.carry_state else "a fresh state for every chunk")
    meaning = _meaning(settings, carried_mse, fresh_mse)
    return f"""
# Recipe `sin-cos` (seed 002, regression)

**Run:** rnnlab's `{settings.cell}` cell (`{settings.backend}` backend), hidden
{settings.hidden_size}, linear read-out; Adam (lr {settings.lr}), MSE, one chunk of
{settings.time_step} points per step, chunk k covering [k*pi, (k+1)*pi], {settings.chunks}
chunks in order, {carrying}, seed {settings.seed}. Then {settings.eval_chunks} further
chunks of the same wave are predicted. Took {result.seconds:.1f} s.

{table(["MSE of cos t", "value"], rows)}

**Plot:** `sin_cos.png`: the input, the target and the trained model's prediction along
the training stream (the state carried from its start), and on the new chunks, with
the state carried and with a fresh one.
**Data:** `metrics.csv` (loss per chunk); `run/` holds the trainer's run (`metrics.csv`,
`last.pt`): rnnlab's stateful trainer (`TrainConfig(tbptt={settings.time_step})`) trains
the chunks as one stream, or, with `carry_state=false`, as separate sequences.

**What it means.** From `sin t` alone the best memoryless guess for `cos t` is 0 (MSE
{baseline:.3f}): the sign of `cos` depends on whether the wave is rising or falling, which
only the past tells. {meaning}
"""


def _meaning(settings: Settings, carried_mse: float, fresh_mse: float) -> str:
    """What the two MSEs say, for the way the model was trained."""
    if settings.carry_state:
        return (f"Trained with its state carried, the model reaches {carried_mse:.4f} on "
                f"new chunks when it keeps carrying it, and {fresh_mse:.4f} with a fresh "
                "state per chunk: it has learned to rely on the state for which half-period "
                "a chunk is in, and the first points of a chunk have no other source.")
    return (f"Trained with a fresh state per chunk, as the seed's printed code does, "
            f"the model gets {fresh_mse:.4f} on new chunks predicted the same way; "
            f"carrying the state, which it never saw in training, gives "
            f"{carried_mse:.4f}. The first points of each chunk must be guessed.")


def _plot(out: Path, settings: Settings, stream: Any, along: torch.Tensor,
          carried: torch.Tensor, fresh: torch.Tensor) -> None:
    span = math.pi
    times = (torch.arange(len(stream.inputs)).unsqueeze(1) * span
             + torch.linspace(0, span, settings.time_step)).reshape(-1).numpy()
    sin_t, cos_t = stream.inputs.reshape(-1).numpy(), stream.targets.reshape(-1).numpy()
    n = settings.chunks * settings.time_step  # points seen in training
    fig, axes = figure(13, 6.5, rows=2)
    top, bottom = axes[0, 0], axes[1, 0]
    top.plot(times[:n], sin_t[:n], color=INPUT_COLOUR, lw=0.8, label="input sin t")
    top.plot(times[:n], cos_t[:n], color=TARGET_COLOUR, lw=1.5, label="target cos t")
    top.plot(times[:n], along.reshape(-1).numpy(), color=MODEL_COLOURS[0], lw=1,
             label="prediction after training")
    top.set_title("training stream, predicted by the trained model (state carried from the "
                  "start)", fontsize=10)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom.plot(times[n:], sin_t[n:], color=INPUT_COLOUR, lw=0.8, label="input sin t")
    bottom.plot(times[n:], cos_t[n:], color=TARGET_COLOUR, lw=2, label="target cos t")
    bottom.plot(times[n:], carried.reshape(-1).numpy(), "o-", ms=3, color=MODEL_COLOURS[0],
                label="prediction, state carried")
    bottom.plot(times[n:], fresh.reshape(-1).numpy(), "x--", ms=3, color=MODEL_COLOURS[1],
                lw=0.8, label="prediction, fresh state per chunk")
    bottom.set_title("new chunks after training", fontsize=10)
    bottom.set_xlabel("t (radians)")
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, out / "sin_cos.png")
