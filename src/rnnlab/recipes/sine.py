"""Recipe ``sine`` (seed 001): next-step sine prediction and an autoregressive rollout.

The seed trains an ``nn.RNN`` with 16 hidden units, every recurrent parameter drawn
from N(0, 0.001^2), and a linear read-out, on one 50-point stretch of ``sin`` per
iteration (start a random whole number in [0, 10), 10 radians long), Adam 0.01,
6000 iterations. The hidden state is carried from one iteration to the next,
detached. It then feeds the model its own predictions and plots them against the
truth.

This recipe does the same with rnnlab's hand-written SRN cell, then measures on new
stretches (real-valued starts): the one-step error, and two rollouts: the seed's
(one true value, then the model's own outputs, starting from the state training
ended in) and a primed one (``prime`` true values from a fresh state first, so the
model knows whether the wave is rising or falling).
"""

from __future__ import annotations

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
from rnnlab.tasks.sine import Sine, rollout_mse
from rnnlab.train import TrainConfig, Trainer, seeded_model
from rnnlab.train.stateful import as_streams

SEED_REPORT = "rollout follows the sine after 6000 iterations (plot only)"


@dataclass(frozen=True)
class Settings:
    """The seed's hyper-parameters (``prime``, ``n_test``, ``seed``, ``backend`` are rnnlab's)."""

    num_time_steps: int = 50  # points per stretch: 49 inputs, 49 next-value targets
    span: float = 10.0
    max_start: int = 10  # start = np.random.randint(10)
    hidden_size: int = 16
    init_std: float = 0.001
    lr: float = 0.01
    iterations: int = 6000
    log_every: int = 100
    prime: int = 10
    n_test: int = 256
    seed: int = 0
    backend: str = "python"  # the hand-written cell, step by step


FAST = {"iterations": 600, "n_test": 64}


def run(out: Path, fast: bool = False, **overrides: Any) -> RecipeResult:
    settings, out, watch = start(Settings, fast, FAST, overrides, out)
    task = Sine(length=settings.num_time_steps - 1, span=settings.span,
                max_start=settings.max_start, n_test=settings.n_test)
    splits = task.splits(seed=settings.seed)
    test = splits["test"]
    baseline = task.memoryless_baseline(splits)
    model, state, history = _train(out, settings, task)
    scores, primed, seed_style = _evaluate(settings, model, state, test)
    _plot_rollout(out, test, settings, primed, seed_style)
    _plot_loss(out, history, baseline)
    one_step, primed_mse, seed_mse = scores
    result = RecipeResult(
        name="sine", out=out, model="srn, one step ahead",
        metric="mse", score=one_step, baseline=baseline,
        chance=task.chance, seconds=watch.seconds,
        numbers={"one_step_mse": round(one_step, 6),
                 f"rollout_mse_prime{settings.prime}": round(primed_mse, 6),
                 "rollout_mse_seed_style": round(seed_mse, 6),
                 "final_train_loss": round(history[-1]["loss"], 6)})
    return finish(result, settings, fast, _readme(settings, result, primed_mse, seed_mse))


def _train(out: Path, settings: Settings,
           task: Sine) -> tuple[torch.nn.Module, torch.Tensor, list[dict[str, Any]]]:
    """Train as the seed does; the state training ended in, and ``metrics.csv``."""
    length = settings.num_time_steps - 1
    seed_task = Sine(length=length, span=settings.span, max_start=settings.max_start,
                     integer_start=True)
    config = model_config_for(task.spec, cell="srn", hidden_size=settings.hidden_size,
                              init="normal", init_std=settings.init_std,
                              backend=settings.backend)
    model = seeded_model(config, settings.seed)
    stretches = seed_task.generate(settings.iterations,
                                   torch.Generator().manual_seed(settings.seed))
    # The seed carries the state from one stretch into the next (detached): to the
    # stateful trainer that is one stream of stretches laid end to end, one per chunk.
    trainer = Trainer(TrainConfig(epochs=1, lr=settings.lr, tbptt=length,
                                  eval_every=settings.log_every, seed=settings.seed,
                                  progress="off", checkpoints="last"))
    fitted = trainer.fit(model, as_streams(stretches), out_dir=out / "run")
    history = [{"iteration": r["step"], "loss": r["train_loss"]} for r in fitted.history]
    write_csv(out / "metrics.csv", ["iteration", "loss"], history)
    return model, trainer.carried_state, history


def _evaluate(settings: Settings, model: torch.nn.Module, state: torch.Tensor,
              test: SplitData) -> tuple[tuple[float, float, float], torch.Tensor, torch.Tensor]:
    """The one-step, primed-rollout and seed-style-rollout MSEs, and the two rollouts."""
    model.eval()
    with torch.no_grad():
        one_step = float(F.mse_loss(model(test.inputs), test.targets))
    primed_mse, primed = rollout_mse(model, test, prime=settings.prime)
    # The seed's rollout: one true value, from the state training ended in.
    seed_state = state.expand(-1, len(test), -1).contiguous()
    seed_style = _rollout_from(model, test.inputs[:, :1], settings.num_time_steps - 1,
                               seed_state)
    seed_mse = float(F.mse_loss(seed_style, test.targets))
    return (one_step, primed_mse, seed_mse), primed, seed_style


def _readme(settings: Settings, result: RecipeResult, primed_mse: float,
            seed_mse: float) -> str:
    one_step, baseline, length = result.score, result.baseline, settings.num_time_steps - 1
    rows = [
        ("one-step prediction (true input every step)", one_step),
        (f"rollout after {settings.prime} true values, fresh state", primed_mse),
        ("rollout as the seed: 1 true value, state from training", seed_mse),
        ("memoryless baseline, one step (best linear map of the current value)", baseline),
        ("chance (always 0)", result.chance),
    ]
    return f"""
# Recipe `sine` (seed 001)

**Run:** rnnlab's hand-written SRN (`{settings.backend}` backend), hidden
{settings.hidden_size}, recurrent parameters drawn from N(0, {settings.init_std}^2), a linear
read-out; {settings.iterations} Adam iterations (lr {settings.lr}), one stretch of
{settings.num_time_steps} points per iteration (start a whole number in
[0, {settings.max_start}), {settings.span:g} radians), the state carried across iterations
(detached), as in the seed; seed {settings.seed}. Evaluated on {settings.n_test} new
stretches with real-valued starts. Took {result.seconds:.1f} s.

{table(["test MSE of", "value"], rows)}

**Plots:** `sine_rollout.png` (truth, the primed rollout and the seed-style rollout on
one test stretch), `sine_loss.png` (training loss, mean over every {settings.log_every}
iterations). **Data:** `metrics.csv`; `run/` holds the trainer's run (`metrics.csv`,
`last.pt`): rnnlab's stateful trainer (`TrainConfig(tbptt={length})`) trains the
{settings.iterations} stretches as one stream, one stretch per chunk.

**What it means.** One step ahead, a model without memory already does well
(MSE {baseline:.4f}): it only lacks whether the wave is rising or falling. The SRN's
one-step MSE is {one_step:.5f}. The rollout is the real test: the model is fed its
own outputs, so errors compound unless it has learned the dynamics of the wave rather
than a copy of its input. Primed with {settings.prime} true values its rollout MSE is
{primed_mse:.4f}; started as the seed starts it, from one value and the state of the
last training stretch, it is {seed_mse:.4f}, because one value cannot say whether the
wave goes up or down.
"""


@torch.no_grad()
def _rollout_from(model: torch.nn.Module, first: torch.Tensor, steps: int,
                  state: torch.Tensor) -> torch.Tensor:
    """Like :func:`rollout` but starting from a given state (the seed's way)."""
    predictions, current = [], first
    for _ in range(steps):
        current, state = model(current, state=state, return_state=True)
        predictions.append(current)
    return torch.cat(predictions, dim=1)


def _plot_rollout(out: Path, test: Any, settings: Settings, primed: torch.Tensor,
                  seed_style: torch.Tensor) -> None:
    dt = settings.span / (settings.num_time_steps - 1)
    steps = (torch.arange(settings.num_time_steps) * dt).numpy()
    truth = torch.cat([test.inputs[0, :1, 0], test.targets[0, :, 0]]).numpy()
    fig, axes = figure(10, 4.2)
    ax = axes[0, 0]
    ax.plot(steps, truth, color=TARGET_COLOUR, lw=2, label="truth")
    ax.plot(steps[:settings.prime], truth[:settings.prime], "o", color=INPUT_COLOUR,
            label=f"{settings.prime} true values fed in")
    ax.plot(steps[settings.prime:], primed[0, :, 0].numpy(), "o", ms=4, color=MODEL_COLOURS[0],
            label="rollout on own predictions (primed)")
    ax.plot(steps[1:], seed_style[0, :, 0].numpy(), "x", ms=4, color=MODEL_COLOURS[1],
            label="rollout as in the seed (1 true value)")
    ax.set_xlabel("t - start (radians)")
    ax.set_ylabel("sin t")
    ax.set_ylim(-1.3, 1.75)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    save_figure(fig, out / "sine_rollout.png")


def _plot_loss(out: Path, history: list[dict[str, Any]], baseline: float) -> None:
    fig, axes = figure(8, 3.6)
    ax = axes[0, 0]
    ax.semilogy([h["iteration"] for h in history], [h["loss"] for h in history],
                color=MODEL_COLOURS[0], label="training MSE (one stretch per iteration)")
    ax.axhline(baseline, color="0.4", ls="--", lw=1, label="memoryless baseline")
    ax.set_xlabel("iteration")
    ax.set_ylabel("MSE")
    ax.legend(fontsize=8)
    save_figure(fig, out / "sine_loss.png")
