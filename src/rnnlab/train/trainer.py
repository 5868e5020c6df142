"""The trainer: ``fit``, ``evaluate``, ``predict`` for any sequence model on whole tensors.

Determinism contract (binding: the lock-step engine reproduces it exactly)
--------------------------------------------------------------------------
1. Initialisation: the caller runs ``seed_everything(config.seed)`` and then builds the
   model (``build_model(model_config)``); :func:`seeded_model` does both. ``fit`` itself
   draws nothing from the global generators.
2. Data order: ``g = torch.Generator().manual_seed(config.seed)``. Every epoch takes
   ``torch.randperm(n, generator=g)`` when ``config.shuffle`` is on, else
   ``torch.arange(n)``. Batch ``b`` of the epoch is ``order[b*B:(b+1)*B]`` (``B`` the
   batch size; the last batch may be smaller). Nothing else draws from ``g``.
3. One optimiser step per batch, in this order: ``zero_grad``; forward
   (``model(inputs)``, or ``model(inputs, lengths=lengths)`` when the split has lengths);
   loss (below); ``backward``; clipping (element clamp ``clip_value``, then each
   parameter's norm ``clip_per_param``, then the global norm ``clip_norm``, each
   only when set, with ``torch.nn.utils`` functions); ``optimizer.step()``.
   The optimiser is ``torch.optim.Adam(params, lr, weight_decay)`` with torch's
   defaults (betas 0.9/0.999, eps 1e-8) or ``torch.optim.SGD(params, lr, momentum,
   weight_decay)``, over ``model.parameters()`` in their registration order.
4. Loss: integer targets ``(N,)`` -> ``cross_entropy(logits (N, C), targets)``; integer
   targets ``(N, L)`` -> cross-entropy over every valid step (steps ``t < lengths[n]``;
   all steps without lengths; targets equal to -100 are skipped, in the accuracy too);
   float targets -> squared error over every valid element (an output ``(N, L, F)`` is
   per step, masked by ``lengths``; an output ``(N, F)``, as from the ``regress-last``
   head, is one vector per sequence and every element counts).
   ``reduction="mean"`` averages over those terms, ``"sum"`` adds them.
5. Evaluation (no gradient, ``model.eval()``) on dev after every ``eval_every`` steps
   (``None``: after every epoch's last batch) counting from 1, and once more at the end
   if the last step was not evaluated. Evaluation draws no random numbers, so it never
   changes the parameters a run ends with. A dev score is a new best when it is
   strictly better than every earlier one (higher accuracy, lower MSE).
6. At the end, with ``restore_best``, the model takes the parameters of the best dev
   evaluation; the test split (if any) is scored with them.

The same seed therefore gives the same numbers run after run on one machine, and a run
resumed from ``last.pt`` (which holds model, optimiser, global RNG states, the data-order
generator and the epoch's order, the position in the epoch and the best parameters) ends
with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.errors import NonFiniteError, RnnlabError, check
from rnnlab.seeding import rng_state, seed_everything, set_rng_state
from rnnlab.tasks.base import SplitData
from rnnlab.train.callbacks import (
    Callback,
    EarlyStopping,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
    progress_wanted,
)
from rnnlab.train.checkpoint import LAST, load_checkpoint
from rnnlab.train.config import RESUMABLE_CHANGES, TrainConfig
from rnnlab.train.data import as_split, as_tensor, batch_ranges, num_batches


def seeded_model(model_config: Any, seed: int) -> nn.Module:
    """Step 1 of the contract: seed every generator, then build the model."""
    from rnnlab.models import build_model

    seed_everything(seed)
    return build_model(model_config)


@dataclass
class TrainState:
    """Where a run stands; everything here goes into the checkpoint."""

    step: int = 0
    epoch: int = 0  # finished epochs
    batch_in_epoch: int = 0  # batches done in the current epoch
    best_score: float | None = None
    best_step: int | None = None
    last_eval_step: int = 0
    stopped_early: bool = False
    finished: bool = False
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FitResult:
    """What ``fit`` returns; :meth:`asdict` is JSON-ready."""

    metric: str
    best_dev_metric: float | None
    best_step: int | None
    steps: int
    epochs: int
    seconds: float
    stopped_early: bool
    resumed_from_step: int | None
    test: dict[str, float] | None
    history: list[dict[str, Any]]

    @property
    def best_score(self) -> float | None:
        """Another name for :attr:`best_dev_metric`."""
        return self.best_dev_metric

    @property
    def test_metric(self) -> float | None:
        return None if self.test is None else self.test[self.metric]

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Trainer:
    """Trains one model by the contract in the module docstring.

    Args:
        config: the :class:`TrainConfig`.
        callbacks: extra :class:`Callback` objects, called after the built-in ones
            (progress bar, metrics CSV and checkpoints when ``out_dir`` is given,
            early stopping when ``config.early_stop_patience`` is set).
    """

    def __init__(self, config: TrainConfig | None = None,
                 callbacks: Sequence[Callback] | None = None) -> None:
        self.config = config or TrainConfig()
        self.user_callbacks = list(callbacks or [])
        self.callbacks: list[Callback] = []
        self.state = TrainState()
        self.should_stop = False
        self.metric = "accuracy"
        self.total_steps = 0
        self.out_dir: Path | None = None
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.meta: dict[str, Any] = {}
        self._generator = torch.Generator()
        self._order: Tensor | None = None
        self._best_model: dict[str, Tensor] | None = None
        self._n_train = 0
        self._pending_train_loss: float | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, model: nn.Module, train: Any, dev: Any = None, test: Any = None,
            out_dir: str | Path | None = None, resume: bool = False,
            meta: dict[str, Any] | None = None) -> FitResult:
        """Train ``model`` on ``train``, evaluating on ``dev``; score ``test`` at the end.

        ``out_dir`` receives ``metrics.csv``, ``last.pt`` and ``best.pt``. With
        ``resume=True`` the run continues from ``out_dir/last.pt`` when it exists.
        ``meta`` (plain values: the model config, the task...) is stored in every
        checkpoint so the run can be rebuilt from it.
        """
        cfg = self.config
        train_split = as_split(train, "train")
        dev_split = None if dev is None else as_split(dev, "dev")
        test_split = None if test is None else as_split(test, "test")
        self.model = model
        self.metric = self._metric_for(train_split)
        self.out_dir = None if out_dir is None else Path(out_dir)
        check(not resume or self.out_dir is not None, "resume needs out_dir (the run folder)")
        self.meta = dict(meta or {})
        model_config = getattr(model, "config", None)
        if "model_config" not in self.meta and dataclasses.is_dataclass(model_config):
            self.meta["model_config"] = dataclasses.asdict(model_config)
        self._n_train = len(train_split)
        nb = num_batches(self._n_train, cfg.batch_size)
        self.total_steps = cfg.epochs * nb
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.optimizer = make_optimizer(cfg, model)
        self.state = TrainState()
        self.should_stop = False
        self._generator = torch.Generator().manual_seed(cfg.seed)
        self._order = None
        self._best_model = None
        # The checkpoint writer goes last, so last.pt holds every other callback's state
        # (early stopping's count) as it stands after the evaluation it is written at.
        defaults = self._default_callbacks()
        writers = [c for c in defaults if isinstance(c, ModelCheckpoint)]
        self.callbacks = ([c for c in defaults if c not in writers] + self.user_callbacks
                          + writers)

        resumed_from = self._resume() if resume else None
        threads = torch.get_num_threads()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        started = time.perf_counter()
        seconds_before = self.state.seconds
        try:
            for callback in self.callbacks:
                callback.on_fit_start(self)
            self._train_loop(train_split, dev_split, nb, started, seconds_before)
            if self.state.last_eval_step != self.state.step:
                self._evaluate_dev(dev_split)
            self.state.finished = True
            self.state.seconds = seconds_before + time.perf_counter() - started
            for callback in self.callbacks:
                callback.on_train_end(self)
            if cfg.restore_best and self._best_model is not None:
                model.load_state_dict(self._best_model)
            test_scores = None if test_split is None else self.evaluate(model, test_split)
        except BaseException as error:
            for callback in self.callbacks:
                callback.on_exception(self, error)
            raise
        finally:
            torch.set_num_threads(threads)
        result = FitResult(
            metric=self.metric,
            best_dev_metric=self.state.best_score,
            best_step=self.state.best_step,
            steps=self.state.step,
            epochs=self.state.epoch,
            seconds=round(self.state.seconds, 3),
            stopped_early=self.state.stopped_early,
            resumed_from_step=resumed_from,
            test=test_scores,
            history=list(self.state.history),
        )
        for callback in self.callbacks:
            callback.on_fit_end(self, result)
        return result

    def _train_loop(self, train: SplitData, dev: SplitData | None, nb: int,
                    started: float, seconds_before: float) -> None:
        cfg, state = self.config, self.state
        eval_every = cfg.eval_every or nb
        loss_sum, loss_count = 0.0, 0
        while not self._done():
            if state.batch_in_epoch >= nb:
                state.epoch += 1
                state.batch_in_epoch = 0
                continue
            if state.batch_in_epoch == 0:
                self._order = self._draw_order(self._n_train)
            bounds = batch_ranges(self._n_train, cfg.batch_size)
            for start, stop in bounds[state.batch_in_epoch:]:
                batch = train.subset(self._order[start:stop])
                loss = self._train_step(batch)
                state.step += 1
                state.batch_in_epoch += 1
                loss_sum, loss_count = loss_sum + loss, loss_count + 1
                for callback in self.callbacks:
                    callback.on_train_batch_end(self, loss)
                if state.step % eval_every == 0:
                    state.seconds = seconds_before + time.perf_counter() - started
                    self._evaluate_dev(dev, loss_sum / loss_count)
                    loss_sum, loss_count = 0.0, 0
                if self.should_stop or self._done():
                    break
            if state.batch_in_epoch >= nb:
                state.epoch += 1
                state.batch_in_epoch = 0
        self._pending_train_loss = loss_sum / loss_count if loss_count else None

    def _done(self) -> bool:
        cfg, state = self.config, self.state
        return (self.should_stop or state.stopped_early or state.epoch >= cfg.epochs
                or (cfg.max_steps is not None and state.step >= cfg.max_steps))

    def _draw_order(self, n: int) -> Tensor:
        if self.config.shuffle:
            return torch.randperm(n, generator=self._generator)
        return torch.arange(n)

    def _train_step(self, batch: SplitData) -> float:
        """One optimiser step; returns the batch loss per term (for logging)."""
        model, optimizer, cfg = self.model, self.optimizer, self.config
        assert model is not None and optimizer is not None
        model.train()
        optimizer.zero_grad(set_to_none=True)
        output = forward(model, batch.inputs, batch.lengths)
        loss, count = compute_loss(output, batch.targets, batch.lengths, self._loss_kind(batch),
                                   cfg.reduction)
        value = float(loss.detach())
        if cfg.stop_on_nonfinite and not math.isfinite(value):
            raise NonFiniteError(self._nonfinite_message(value), step=self.state.step + 1)
        loss.backward()
        clip_gradients(model.parameters(), cfg)
        optimizer.step()
        return value / count if cfg.reduction == "sum" else value

    def _nonfinite_message(self, value: float) -> str:
        state = self.state
        what = "nan" if math.isnan(value) else "infinite"
        where = f"loss became {what} at step {state.step + 1} (epoch {state.epoch + 1})"
        last = None if self.out_dir is None else self.out_dir / LAST
        if self.config.checkpoints == "none":
            kept = "checkpoints are off (checkpoints='none'), so none was kept"
        elif last is not None and last.is_file():
            kept = f"the last good checkpoint is kept at {last} (step {state.last_eval_step})"
        elif last is not None:
            kept = "no checkpoint had been written yet"
        else:
            kept = "no out_dir was given, so no checkpoint was kept"
        return f"{where}; {kept}; try a lower learning rate or gradient clipping (clip_norm)"

    # ------------------------------------------------------------------ evaluation
    def _evaluate_dev(self, dev: SplitData | None, train_loss: float | None = None) -> None:
        state = self.state
        if train_loss is None:
            train_loss = self._pending_train_loss
            self._pending_train_loss = None
        record: dict[str, Any] = {
            "step": state.step,
            "epoch": state.epoch + (1 if state.batch_in_epoch else 0),
            "train_loss": train_loss,
            "dev_loss": None,
            f"dev_{self.metric}": None,
        }
        improved = False
        if dev is not None:
            assert self.model is not None
            scores = self.evaluate(self.model, dev)
            score = scores[self.metric]
            record["dev_loss"] = scores["loss"]
            record[f"dev_{self.metric}"] = score
            improved = math.isfinite(score) and (
                state.best_score is None
                or (score > state.best_score if self.metric == "accuracy"
                    else score < state.best_score))
            if improved:
                state.best_score, state.best_step = score, state.step
                self._best_model = {k: v.detach().clone()
                                    for k, v in self.model.state_dict().items()}
        state.last_eval_step = state.step
        state.history.append(record)
        for callback in self.callbacks:
            callback.on_evaluate(self, {**record, "improved": improved})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        """``{"loss": mean loss per term, metric: value}`` over a whole split."""
        split = as_split(data, "data")
        metric = self.config.metric if self.config.metric != "auto" else _auto_metric(split)
        kind = self._loss_kind(split)
        was_training = model.training
        model.eval()
        loss_sum, terms, metric_sum, metric_terms = 0.0, 0, 0.0, 0
        try:
            for start, stop in batch_ranges(len(split), self.config.eval_batch_size):
                batch = SplitData(split.inputs[start:stop], split.targets[start:stop],
                                  None if split.lengths is None else split.lengths[start:stop])
                output = forward(model, batch.inputs, batch.lengths)
                loss, count = compute_loss(output, batch.targets, batch.lengths, kind, "sum")
                loss_sum, terms = loss_sum + float(loss), terms + count
                value, count = metric_sum_count(output, batch.targets, batch.lengths, metric)
                metric_sum, metric_terms = metric_sum + value, metric_terms + count
        finally:
            model.train(was_training)
        return {"loss": loss_sum / max(terms, 1), metric: metric_sum / max(metric_terms, 1)}

    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: Any, lengths: Any = None) -> Tensor:
        """The model's outputs (logits or values) for ``inputs``, in batches, in eval mode."""
        x = as_tensor(inputs)
        lens = None if lengths is None else as_tensor(lengths)
        was_training = model.training
        model.eval()
        try:
            outputs = [
                forward(model, x[start:stop], None if lens is None else lens[start:stop])
                for start, stop in batch_ranges(x.shape[0], self.config.eval_batch_size)
            ]
        finally:
            model.train(was_training)
        return torch.cat(outputs)

    # ------------------------------------------------------------------ loss and metric
    def _metric_for(self, split: SplitData) -> str:
        return self.config.metric if self.config.metric != "auto" else _auto_metric(split)

    def _loss_kind(self, split: SplitData) -> str:
        loss = self.config.loss
        if loss == "auto":
            return "mse" if split.targets.is_floating_point() else "cross_entropy"
        check(loss != "cross_entropy" or not split.targets.is_floating_point(),
              "loss 'cross_entropy' needs integer class targets, but the targets are real numbers")
        return loss

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, kind: str) -> dict[str, Any]:
        """Everything a resume needs, as plain values (see :mod:`rnnlab.train.checkpoint`)."""
        assert self.model is not None and self.optimizer is not None
        state = self.state
        return {
            "kind": kind,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_model": self._best_model if kind == "last" else None,
            "rng": rng_state(),
            "data_generator": self._generator.get_state(),
            "order": self._order,
            "n_train": self._n_train,
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "best_score": state.best_score,
            "best_step": state.best_step,
            "last_eval_step": state.last_eval_step,
            "stopped_early": state.stopped_early,
            "finished": state.finished,
            "seconds": state.seconds,
            "metric": self.metric,
            "history": list(state.history),
            "train_config": self.config.asdict(),
            "meta": self.meta,
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks
                          if c.state_dict()},
        }

    def _resume(self) -> int | None:
        assert self.out_dir is not None and self.model is not None and self.optimizer is not None
        path = self.out_dir / LAST
        if not path.is_file():
            return None
        ckpt = load_checkpoint(path)
        saved = ckpt.get("train_config", {})
        changed = sorted(key for key, value in self.config.asdict().items()
                         if key not in RESUMABLE_CHANGES and saved.get(key) != value)
        if changed:
            diffs = ", ".join(f"{k}={saved.get(k)!r} (now {getattr(self.config, k)!r})"
                              for k in changed)
            raise RnnlabError(f"cannot resume from {path}: it was trained with {diffs}")
        check(ckpt.get("n_train") == self._n_train,
              f"cannot resume from {path}: it was trained on {ckpt.get('n_train')} examples, "
              f"the training split now has {self._n_train}")
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise RnnlabError(f"cannot resume from {path}: its parameters do not fit this "
                              f"model ({str(err).splitlines()[0]})") from err
        self.optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        self._generator.set_state(ckpt["data_generator"])
        self._order = ckpt["order"]
        self._best_model = ckpt.get("best_model")
        fields = {f.name for f in dataclasses.fields(TrainState)}
        self.state = TrainState(**{k: ckpt[k] for k in fields if k in ckpt})
        self.state.history = list(ckpt.get("history", []))
        self.state.finished = False
        self.meta = {**ckpt.get("meta", {}), **self.meta}
        for callback in self.callbacks:
            saved_state = ckpt.get("callbacks", {}).get(type(callback).__name__)
            if saved_state:
                callback.load_state_dict(saved_state)
        return self.state.step

    def _default_callbacks(self) -> list[Callback]:
        cfg = self.config
        callbacks: list[Callback] = []
        if progress_wanted(cfg.progress):
            callbacks.append(ProgressBar())
        if self.out_dir is not None:
            callbacks.append(MetricsLogger(self.out_dir / "metrics.csv"))
            if cfg.checkpoints != "none":
                callbacks.append(ModelCheckpoint(self.out_dir,
                                                 save_best=cfg.checkpoints == "best+last"))
        if cfg.early_stop_patience is not None:
            callbacks.append(EarlyStopping(cfg.early_stop_patience))
        return callbacks


# ---------------------------------------------------------------------- building blocks
def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD over ``model.parameters()``, as the contract states."""
    params = list(model.parameters())
    check(len(params) > 0, "the model has no parameters to train")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def clip_gradients(parameters: Iterable[nn.Parameter], config: TrainConfig) -> float | None:
    """Clip in place: element clamp, then per-parameter norm, then global norm.

    Returns the global gradient norm before the global clip (``None`` when
    ``clip_norm`` is unset), which is what one plots to see gradients explode.
    """
    params = [p for p in parameters if p.grad is not None]
    if config.clip_value is not None:
        nn.utils.clip_grad_value_(params, config.clip_value)
    if config.clip_per_param is not None:
        for p in params:
            nn.utils.clip_grad_norm_([p], config.clip_per_param)
    if config.clip_norm is not None:
        return float(nn.utils.clip_grad_norm_(params, config.clip_norm))
    return None


def forward(model: nn.Module, inputs: Tensor, lengths: Tensor | None) -> Tensor:
    """Call the model, passing ``lengths`` only when there are some (plain modules work)."""
    output = model(inputs) if lengths is None else model(inputs, lengths=lengths)
    if isinstance(output, tuple):
        output = output[0]
    return output


def _valid_steps(lengths: Tensor | None, steps: int, batch: int) -> Tensor | None:
    if lengths is None:
        return None
    return torch.arange(steps).unsqueeze(0) < lengths.reshape(batch, 1)


def _regression_terms(output: Tensor, targets: Tensor,
                      lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """Outputs and float targets aligned, keeping only the valid steps of each sequence."""
    targets = targets.to(output.dtype)
    if targets.shape != output.shape and targets.numel() == output.numel():
        targets = targets.reshape(output.shape)
    if output.dim() >= 3 and lengths is not None:  # (N, L, F): per step; (N, F): per sequence
        valid = _valid_steps(lengths, output.shape[1], output.shape[0])
        output, targets = output[valid], targets[valid]
    return output, targets


def compute_loss(output: Tensor, targets: Tensor, lengths: Tensor | None, kind: str,
                 reduction: str) -> tuple[Tensor, int]:
    """The loss by the contract (point 4) and the number of terms it covers."""
    if kind == "cross_entropy":
        if targets.dim() >= 2:  # tagging: (N, L, C) against (N, L)
            valid = _valid_steps(lengths, targets.shape[1], targets.shape[0])
            if valid is not None:
                output, targets = output[valid], targets[valid]
            else:
                output, targets = output.reshape(-1, output.shape[-1]), targets.reshape(-1)
        counted = int((targets != -100).sum())
        return F.cross_entropy(output, targets, reduction=reduction), counted
    output, targets = _regression_terms(output, targets, lengths)
    return F.mse_loss(output, targets, reduction=reduction), int(targets.numel())


def metric_sum_count(output: Tensor, targets: Tensor, lengths: Tensor | None,
                     metric: str) -> tuple[float, int]:
    """The metric's numerator and denominator over a batch (so batches add up exactly)."""
    if metric == "accuracy":
        predicted = output.argmax(-1)
        valid = (targets != -100)
        if targets.dim() >= 2 and lengths is not None:
            valid = valid & _valid_steps(lengths, targets.shape[1], targets.shape[0])
        return float(((predicted == targets) & valid).sum()), int(valid.sum())
    output, targets = _regression_terms(output, targets, lengths)
    return float(((output - targets) ** 2).sum()), int(targets.numel())


def _auto_metric(split: SplitData) -> str:
    return "mse" if split.targets.is_floating_point() else "accuracy"
