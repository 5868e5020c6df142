"""Recipe ``text-bilstm`` (seed 004): a bidirectional LSTM reads reviews, padded and masked.

Seed 004's last case study classifies text with a bidirectional LSTM and lists what
practice needs: a vocabulary built on the training texts (with an unknown-word id and
a minimum count), batches padded to one length, the padded positions masked in both
directions (the backward direction must start at each text's last real token), and
packed sequences where the library's fast kernels are used. This recipe does all of
it with rnnlab's ``text`` task: ``Recurrent(..., bidirectional=True)`` over the token
embeddings, a classifier on the two final states (or, with ``pool=mean``, on the
outputs averaged over the real tokens), trained by rnnlab's trainer.

Without ``--data-dir`` it uses the generated corpus, where word order and negation
decide the label ("good , not bad" against "bad , not good"): a bag-of-words model
provably cannot exceed 75% there. With ``--data-dir`` it reads a folder in the IMDB
layout (``train/pos``, ``train/neg``, ``test/pos``, ``test/neg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnlab.io import write_csv
from rnnlab.models import model_config_for
from rnnlab.recipes.common import (
    MODEL_COLOURS,
    RecipeResult,
    figure,
    finish,
    save_figure,
    start,
)
from rnnlab.report.markdown import table
from rnnlab.tasks.text import Text, bag_of_words_ceiling, bag_of_words_predictions
from rnnlab.tasks.text_corpus import KINDS
from rnnlab.train import FitResult, TrainConfig, Trainer, seeded_model
from rnnlab.train.callbacks import csv_value

SEED_REPORT = "bidirectional LSTM sentiment classifier (no number reported)"
COLUMNS = ["step", "epoch", "train_loss", "dev_loss", "dev_accuracy"]


@dataclass(frozen=True)
class Settings:
    """The model and training (rnnlab's choices; the seed gives no hyper-parameters)."""

    data_dir: str | None = None  # None: the generated corpus
    n_train: int = 2000
    n_dev: int = 500
    n_test: int = 1000
    min_count: int = 1
    max_length: int = 400
    embedding_dim: int = 32
    hidden_size: int = 32
    pool: str = "last"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-3
    clip_norm: float = 1.0
    seed: int = 0
    backend: str = "native"  # torch.nn.LSTM on packed sequences


FAST = {"n_train": 1000, "n_dev": 200, "n_test": 200, "epochs": 4}


def run(out: Path, fast: bool = False, **overrides: Any) -> RecipeResult:
    settings, out, watch = start(Settings, fast, FAST, overrides, out)
    task = Text(data_dir=settings.data_dir, n_train=settings.n_train, n_dev=settings.n_dev,
                n_test=settings.n_test, min_count=settings.min_count,
                max_length=settings.max_length)
    splits = task.splits(seed=settings.seed)
    train, test = splits["train"], splits["test"]
    fitted, predicted = _train(out, settings, task, splits)
    bag = bag_of_words_predictions(train, test, task.vocab_size)
    scores = {"bilstm": _accuracy(predicted, test.targets),
              "bag_of_words": _accuracy(bag, test.targets)}
    ceiling = bag_of_words_ceiling(test)
    per_kind = _per_kind(task.reviews(settings.seed)["test"].kinds, predicted, bag,
                         test.targets)
    _plot(out, fitted.history, per_kind, scores["bag_of_words"], ceiling, task.chance)
    result = RecipeResult(
        name="text-bilstm", out=out, model=f"bidirectional lstm, pool {settings.pool}",
        metric="accuracy", score=scores["bilstm"], baseline=scores["bag_of_words"],
        chance=task.chance, seconds=watch.seconds,
        numbers={"test_accuracy": round(scores["bilstm"], 4),
                 "bag_of_words_accuracy": round(scores["bag_of_words"], 4),
                 "bag_of_words_ceiling": round(ceiling, 4),
                 "vocab_size": task.vocab_size, "best_dev_accuracy": fitted.best_dev_metric,
                 "per_kind": per_kind})
    return finish(result, settings, fast, _readme(settings, result, ceiling))


def _train(out: Path, settings: Settings, task: Text,
           splits: dict[str, Any]) -> tuple[FitResult, torch.Tensor]:
    """Train (the best dev epoch restored); the fit and its test-set predictions."""
    config = model_config_for(task.spec, cell="lstm", bidirectional=True, init="keras",
                              hidden_size=settings.hidden_size,
                              embedding_dim=settings.embedding_dim, pool=settings.pool,
                              backend=settings.backend)
    model = seeded_model(config, settings.seed)
    trainer = Trainer(TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                  lr=settings.lr, clip_norm=settings.clip_norm,
                                  seed=settings.seed, progress="off"))
    test = splits["test"]
    fitted = trainer.fit(model, splits["train"], splits["dev"], test, out_dir=out / "run")
    write_csv(out / "metrics.csv", COLUMNS,
              [{key: csv_value(r.get(key)) for key in COLUMNS} for r in fitted.history])
    return fitted, trainer.predict(model, test.inputs, test.lengths).argmax(-1)


def _per_kind(kinds: list[str] | None, predicted: torch.Tensor, bag: torch.Tensor,
              targets: torch.Tensor) -> dict[str, dict[str, float]]:
    """Both models' accuracy on each kind of review (none for a corpus without kinds)."""
    if kinds is None:
        return {}
    return {kind: {"bilstm": _accuracy(predicted, targets, kinds, kind),
                   "bag_of_words": _accuracy(bag, targets, kinds, kind)}
            for kind in KINDS}


def _tables(settings: Settings, result: RecipeResult, ceiling: float) -> str:
    """The test accuracies, then (for the generated corpus) the accuracies by kind."""
    scores = {"bilstm": result.score, "bag_of_words": result.baseline}
    per_kind = result.numbers["per_kind"]
    rows = [("bidirectional LSTM (masked, classifier on both final states)"
             if settings.pool == "last" else
             "bidirectional LSTM (masked, classifier on the mean over real tokens)",
             scores["bilstm"]),
            ("bag of words (logistic regression on word counts)", scores["bag_of_words"]),
            ("best any bag-of-words model could do on this test set", ceiling),
            ("chance (the more common label)", result.chance)]
    kind_rows = [(kind, v["bilstm"], v["bag_of_words"]) for kind, v in per_kind.items()]
    kind_table = ("" if not kind_rows else "\n\nAccuracy by kind of review:\n\n"
                  + table(["kind", "bidirectional LSTM", "bag of words"], kind_rows))
    return table(["test accuracy of", "value"], rows) + kind_table


def _readme(settings: Settings, result: RecipeResult, ceiling: float) -> str:
    scores = {"bilstm": result.score, "bag_of_words": result.baseline}
    vocab_size = result.numbers["vocab_size"]
    corpus = (f"the reviews in {settings.data_dir}" if settings.data_dir
              else f"the generated corpus ({settings.n_train}/{settings.n_dev}/"
                   f"{settings.n_test} reviews)")
    steps = "packed sequences" if settings.backend == "native" else "masked steps"
    reads = ("the forward state at each text's last real token joined with the backward "
             "state at its first" if settings.pool == "last"
             else "the outputs averaged over the real tokens")
    return f"""
# Recipe `text-bilstm` (seed 004, text classification)

**Run:** {corpus}; tokens are lower-cased words and punctuation, the vocabulary
({vocab_size} ids with `<pad>` and `<unk>`) is built on the training split only
(min count {settings.min_count}), texts are cut to {settings.max_length} tokens and padded
per batch with their lengths kept. Model: embedding {settings.embedding_dim}, one
bidirectional LSTM layer of {settings.hidden_size} units per direction
(`{settings.backend}` backend: {steps}), a linear classifier on {reads}.
Adam (lr {settings.lr}), batches of {settings.batch_size}, global-norm clip
{settings.clip_norm}, {settings.epochs} epochs, the best dev epoch restored; seed
{settings.seed}. Took {result.seconds:.1f} s.

{_tables(settings, result, ceiling)}

**Plot:** `text_bilstm.png` (dev accuracy while training; accuracy by kind of review).
**Data:** `metrics.csv`; `run/` holds the trainer's run (`metrics.csv`, `best.pt`,
`last.pt`).

**What it means.** A bag of words knows which words a review has, never their order.
In the generated corpus every "X , not Y" and "X but Y" review has a mirror with the
same words and the other label, so on those kinds any bag-of-words model is right
exactly half the time, and {ceiling:.3f} is the most it could reach on this test set;
the logistic regression gets {scores['bag_of_words']:.3f} (a linear model cannot even
hold "good" positive and "not good" negative at once). The bidirectional LSTM reads
the words in order and gets {scores['bilstm']:.3f}.
"""


def _accuracy(predicted: torch.Tensor, targets: torch.Tensor, kinds: list[str] | None = None,
              kind: str | None = None) -> float:
    if kinds is not None:
        rows = torch.tensor([k == kind for k in kinds])
        predicted, targets = predicted[rows], targets[rows]
    return float((predicted == targets).float().mean())


def _plot(out: Path, history: list[dict[str, Any]], per_kind: dict[str, dict[str, float]],
          bag: float, ceiling: float, chance: float) -> None:
    fig, axes = figure(11, 3.8, cols=2 if per_kind else 1)
    ax = axes[0, 0]
    ax.plot([r["step"] for r in history], [r["dev_accuracy"] for r in history], "o-",
            color=MODEL_COLOURS[0], label="bidirectional LSTM (dev)")
    for value, style, label in ((ceiling, "--", "bag-of-words ceiling (test)"),
                                (bag, ":", "bag of words (test)"),
                                (chance, "-.", "chance")):
        ax.axhline(value, color="0.4", ls=style, lw=1, label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    if per_kind:
        ax = axes[0, 1]
        names = list(per_kind)
        x = torch.arange(len(names)).numpy()
        ax.bar(x - 0.2, [per_kind[k]["bilstm"] for k in names], 0.4, color=MODEL_COLOURS[0],
               label="bidirectional LSTM")
        ax.bar(x + 0.2, [per_kind[k]["bag_of_words"] for k in names], 0.4,
               color=MODEL_COLOURS[1], label="bag of words")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, out / "text_bilstm.png")
