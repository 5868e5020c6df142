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

7. Stateful training (``config.tbptt``, :mod:`rnnlab.train.stateful`): the training
   rows are streams, batch ``b`` of an epoch is chunk ``b`` of every stream, the state
   the chunk ends in is carried (detached) into the next and reset at each epoch's
   start; dev is scored along its streams the same way, from a fresh state.

8. Other inputs (:mod:`rnnlab.train.inputs`). A training ``DataLoader`` replaces
   point 2: its own sampler orders and batches the data, one optimiser step per batch
   it yields; a resume replays the epoch's iterator from the RNG states recorded at
   the epoch's start. Dev and test loaders are read once, as whole splits. With a
   ``device`` the model and every batch move there (the numbers are then that
   device's). A ``scheduler`` factory builds an LR scheduler on the optimiser; it steps
   after the optimiser at each epoch's end (``scheduler_interval="epoch"``, the
   default, as in Keras and Lightning) or after every step (``"step"``);
   ``ReduceLROnPlateau`` steps after each evaluation with the dev loss. Its state is in
   every checkpoint. ``loss_fn(output, targets)`` replaces point 4's loss in training
   and in the dev/test ``loss``; ``metrics`` (``{name: fn(output, targets)}``) are
   reported beside the metric (``dev_<name>`` columns) and never judge the best.

The same seed therefore gives the same numbers run after run on one machine, and a run
resumed from ``last.pt`` (which holds model, optimiser, global RNG states and the run
state, :class:`~rnnlab.train.state.TrainState`: position, data order, best parameters,
carried state) ends with exactly the parameters of an uninterrupted run.

Where things live: the run state and data order in :mod:`rnnlab.train.state`, loss,
metric and the judging rules in :mod:`rnnlab.train.scoring`, the optimiser and
clipping in :mod:`rnnlab.train.optim`, streams in :mod:`rnnlab.train.stateful`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from rnnlab.errors import NonFiniteError, RnnlabError, ensure
from rnnlab.seeding import rng_state, seed_everything, set_rng_state
from rnnlab.tasks.base import SplitData
from rnnlab.train import evaluation, stateful
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
from rnnlab.train.data import as_split, batch_ranges, num_batches
from rnnlab.train.inputs import (
    LoaderEpochs,
    Metric,
    is_plateau,
    loader_split,
    make_scheduler,
    to_device,
)
from rnnlab.train.optim import clip_gradients, make_optimizer
from rnnlab.train.scoring import (
    auto_metric,
    checkpoint_kept,
    compute_loss,
    forward,
    is_improvement,
    loss_kind,
    metric_sum_count,
    nonfinite_message,
)
from rnnlab.train.state import DataOrder, FitResult, TrainState


def seeded_model(model_config: Any, seed: int) -> nn.Module:
    """Step 1 of the contract: seed every generator, then build the model."""
    from rnnlab.models import build_model

    seed_everything(seed)
    return build_model(model_config)


class Trainer:
    """Trains one model by the contract in the module docstring.

    The run state is public: ``state`` (:class:`~rnnlab.train.state.TrainState`),
    ``model``, ``optimizer``, ``metric``, ``meta`` and ``callbacks``;
    :meth:`checkpoint_state` turns them into a checkpoint and :meth:`load_state_dict`
    puts a checkpoint back. :meth:`attach` sets them from outside (the lock-step
    engine does, to write the checkpoints this trainer would write).

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
        self._order = DataOrder(self.config.seed, self.config.shuffle)
        self._pending: dict[str, float] | None = None
        self.device: torch.device | None = None
        self.scheduler: Any = None
        self.scheduler_interval = "epoch"
        self.loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None
        self.metrics: dict[str, Metric] = {}
        self._loader: LoaderEpochs | None = None

    @property
    def stateful(self) -> bool:
        """Whether this trainer trains over streams (``config.tbptt`` set)."""
        return self.config.tbptt is not None

    @property
    def columns(self) -> list[str]:
        """The columns of ``metrics.csv``, one row per evaluation."""
        m = self.metric
        if self.stateful:
            return ["step", "epoch", "train_loss", f"train_{m}", "dev_loss", f"dev_{m}",
                    f"dev_{m}_fresh"]
        return ["step", "epoch", "train_loss", "dev_loss", f"dev_{m}",
                *(f"dev_{name}" for name in self.metrics)]

    @property
    def carried_state(self) -> Any:
        """Stateful training: the state the last chunk ended in (``h`` or ``(h, c)``)."""
        return stateful.from_list(self.state.carried)

    # ------------------------------------------------------------------ fit
    def fit(self, model: nn.Module, train: Any, dev: Any = None, test: Any = None,
            out_dir: str | Path | None = None, resume: bool = False,
            meta: dict[str, Any] | None = None, *, device: str | torch.device | None = None,
            scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
            scheduler_interval: str = "epoch",
            loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
            metrics: dict[str, Metric] | None = None) -> FitResult:
        """Train ``model`` on ``train``, evaluating on ``dev``; score ``test`` at the end.

        Each split is a ``SplitData``, an ``(inputs, targets[, lengths])`` pair, a
        ``Dataset`` or a ``DataLoader``. ``out_dir`` receives ``metrics.csv``,
        ``last.pt`` and ``best.pt``. With ``resume=True`` the run continues from
        ``out_dir/last.pt`` when it exists. ``meta`` (plain values: the model config,
        the task...) is stored in every checkpoint so the run can be rebuilt from it.
        ``device``, ``scheduler`` (a function of the optimiser returning an LR
        scheduler, e.g. ``lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)``),
        ``scheduler_interval``, ``loss_fn`` and ``metrics``: contract point 8.
        """
        train_split, dev_split, test_split, nb = self._prepare(
            model, train, dev, test, out_dir, resume, meta, device, scheduler,
            scheduler_interval, loss_fn, metrics)
        cfg = self.config
        resumed_from = self._resume() if resume else None
        if self._loader is not None:
            self._loader.resume(self.state.loader_rng, self.state.batch_in_epoch)
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
            if cfg.restore_best and self.state.best_model is not None:
                model.load_state_dict(self.state.best_model)
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

    def _prepare(self, model: nn.Module, train: Any, dev: Any, test: Any,
                 out_dir: str | Path | None, resume: bool, meta: dict[str, Any] | None,
                 device: str | torch.device | None,
                 scheduler: Callable[[torch.optim.Optimizer], Any] | None,
                 scheduler_interval: str, loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
                 metrics: dict[str, Metric] | None
                 ) -> tuple[SplitData | None, SplitData | None, SplitData | None, int]:
        """Everything ``fit`` sets up before training: splits, device, optimiser, run
        state, scheduler, step budget, data order and callbacks."""
        cfg = self.config
        self._loader = LoaderEpochs(train) if isinstance(train, DataLoader) else None
        train_split = None if self._loader is not None else as_split(train, "train")
        dev_split = None if dev is None else self._split(dev, "dev")
        test_split = None if test is None else self._split(test, "test")
        self.device = None if device is None else torch.device(device)
        self.loss_fn, self.metrics = loss_fn, dict(metrics or {})
        extra = self._loader is not None or loss_fn is not None or self.metrics
        ensure(not (self.stateful and (extra or device is not None or scheduler is not None)),
              "stateful training (tbptt) takes whole tensors only: no DataLoader, device, "
              "scheduler, loss_fn or metrics")
        if self.device is not None:
            model.to(self.device)
        if self.stateful:
            for name, split in (("train", train_split), ("dev", dev_split),
                                ("test", test_split)):
                if split is not None:
                    stateful.check_streams(split, name)
        self.out_dir = None if out_dir is None else Path(out_dir)
        ensure(not resume or self.out_dir is not None, "resume needs out_dir (the run folder)")
        meta = dict(meta or {})
        model_config = getattr(model, "config", None)
        if "model_config" not in meta and dataclasses.is_dataclass(model_config):
            meta["model_config"] = dataclasses.asdict(model_config)
        n_train = self._loader.examples if self._loader else len(train_split)
        self.attach(model, make_optimizer(cfg, model), TrainState(n_train=n_train),
                    metric=self._metric_for(train_split), meta=meta)
        self.scheduler = make_scheduler(scheduler, self.optimizer, scheduler_interval)
        self.scheduler_interval = scheduler_interval
        nb = self._batches_per_epoch(train_split)
        self.total_steps = cfg.epochs * nb
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.should_stop = False
        self._order = DataOrder(cfg.seed, cfg.shuffle)
        # The checkpoint writer goes last, so last.pt holds every other callback's state
        # (early stopping's count) as it stands after the evaluation it is written at.
        defaults = self._default_callbacks()
        writers = [c for c in defaults if isinstance(c, ModelCheckpoint)]
        self.callbacks = ([c for c in defaults if c not in writers] + self.user_callbacks
                          + writers)

        return train_split, dev_split, test_split, nb

    def _split(self, data: Any, name: str) -> SplitData:
        return loader_split(data, name) if isinstance(data, DataLoader) else as_split(data, name)

    def _batches_per_epoch(self, train: SplitData | None) -> int:
        if self._loader is not None:
            return self._loader.batches
        if self.stateful:
            return len(stateful.chunk_ranges(train.inputs.shape[1], int(self.config.tbptt)))
        return num_batches(len(train), self.config.batch_size)

    def _train_loop(self, train: SplitData, dev: SplitData | None, nb: int,
                    started: float, seconds_before: float) -> None:
        cfg, state = self.config, self.state
        eval_every = cfg.eval_every or nb
        sums = _Running()
        while not self._done():
            if state.batch_in_epoch >= nb:
                self._end_epoch()
                continue
            if state.batch_in_epoch == 0:
                self._start_epoch(state.n_train)
            for batch in self._rest_of_epoch(train):
                loss = self._train_step(batch, sums)
                state.step += 1
                state.batch_in_epoch += 1
                if self.scheduler_interval == "step" and not self._plateau:
                    self.scheduler.step()
                for callback in self.callbacks:
                    callback.on_train_batch_end(self, loss)
                if state.step % eval_every == 0:
                    state.seconds = seconds_before + time.perf_counter() - started
                    self._evaluate_dev(dev, sums.take())
                if self.should_stop or self._done():
                    break
            if state.batch_in_epoch >= nb:
                self._end_epoch()
        self._pending = sums.take()

    @property
    def _plateau(self) -> bool:
        return self.scheduler is None or is_plateau(self.scheduler)

    def _end_epoch(self) -> None:
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        if self.scheduler_interval == "epoch" and not self._plateau:
            self.scheduler.step()

    def _start_epoch(self, n: int) -> None:
        if self.stateful:  # every stream starts again: a fresh state, no draw
            self.state.carried = None
            return
        if self._loader is not None:  # the loader orders; record where its order comes from
            self.state.loader_rng = self._loader.start_epoch()
            return
        self.state.order = self._order.draw(n)
        self.state.data_generator = self._order.get_state()

    def _rest_of_epoch(self, train: SplitData | None) -> Iterable[SplitData]:
        """This epoch's batches not trained on yet."""
        if self._loader is not None:
            return self._loader.rest_of_epoch()
        assert train is not None
        return self._batches(train)[self.state.batch_in_epoch:]

    def _batches(self, train: SplitData) -> list[SplitData]:
        """This epoch's batches: slices of the order, or chunks of the streams."""
        if self.stateful:
            return [SplitData(train.inputs[:, a:b], train.targets[:, a:b])
                    for a, b in stateful.chunk_ranges(train.inputs.shape[1],
                                                      int(self.config.tbptt))]
        order = self.state.order
        assert order is not None
        return [train.subset(order[a:b])
                for a, b in batch_ranges(self.state.n_train, self.config.batch_size)]

    def _done(self) -> bool:
        cfg, state = self.config, self.state
        return (self.should_stop or state.stopped_early or state.epoch >= cfg.epochs
                or (cfg.max_steps is not None and state.step >= cfg.max_steps))

    def _train_step(self, batch: SplitData, sums: _Running) -> float:
        """One optimiser step; returns the batch loss per term (for logging)."""
        model, optimizer, cfg = self.model, self.optimizer, self.config
        assert model is not None and optimizer is not None
        model.train()
        optimizer.zero_grad(set_to_none=True)
        final = None
        batch = to_device(batch, self.device)
        if self.stateful:
            output, final = model(batch.inputs, state=self.carried_state, return_state=True)
        else:
            output = forward(model, batch.inputs, batch.lengths)
        if self.loss_fn is not None:
            loss, count = self.loss_fn(output, batch.targets), 1
        else:
            loss, count = compute_loss(output, batch.targets, batch.lengths,
                                       loss_kind(cfg.loss, batch.targets), cfg.reduction)
        value = float(loss.detach())
        if cfg.stop_on_nonfinite and not math.isfinite(value):
            raise NonFiniteError(self._nonfinite_message(value), step=self.state.step + 1)
        loss.backward()
        clip_gradients(model.parameters(), cfg)
        optimizer.step()
        value = value / count if cfg.reduction == "sum" and self.loss_fn is None else value
        sums.add_loss(value)
        if self.stateful:
            self.state.carried = stateful.to_list(final)
            sums.add_metric(*metric_sum_count(output.detach(), batch.targets, None,
                                              self.metric))
        return value

    def _nonfinite_message(self, value: float) -> str:
        state = self.state
        written = None
        if self.out_dir is not None and (self.out_dir / LAST).is_file():
            written = state.last_eval_step
        kept = checkpoint_kept(self.out_dir, written, self.config.checkpoints == "none")
        return nonfinite_message(value, state.step + 1, state.epoch + 1, kept)

    # ------------------------------------------------------------------ evaluation
    def _evaluate_dev(self, dev: SplitData | None,
                      train: dict[str, float] | None = None) -> None:
        state = self.state
        if train is None:
            train, self._pending = self._pending or {}, None
        record: dict[str, Any] = dict.fromkeys(self.columns)
        record.update(step=state.step, epoch=state.epoch + (1 if state.batch_in_epoch else 0),
                      train_loss=train.get("loss"))
        if self.stateful:
            record[f"train_{self.metric}"] = train.get("metric")
        improved = False
        if dev is not None:
            assert self.model is not None
            scores = self.evaluate(self.model, dev)
            for key, value in scores.items():
                record[f"dev_{key}"] = value
            if self.scheduler is not None and is_plateau(self.scheduler):
                self.scheduler.step(scores["loss"])
            improved = is_improvement(self.metric, scores[self.metric], state.best_score)
            if improved:
                state.best_score, state.best_step = scores[self.metric], state.step
                state.best_model = {k: v.detach().clone()
                                    for k, v in self.model.state_dict().items()}
        state.last_eval_step = state.step
        state.history.append(record)
        for callback in self.callbacks:
            callback.on_evaluate(self, {**record, "improved": improved})

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        """``{"loss": mean loss per term, metric: value}`` over a whole split, in eval
        mode (stateful: along the streams, adding ``<metric>_fresh``; see
        :func:`rnnlab.train.evaluation.evaluate`)."""
        data = self._split(data, "data") if isinstance(data, DataLoader) else data
        return evaluation.evaluate(model, data, self.config, device=self.device,
                                   loss_fn=self.loss_fn, metrics=self.metrics)

    def predict(self, model: nn.Module, inputs: Any, lengths: Any = None) -> Tensor:
        """The model's outputs (logits or values) for ``inputs``, in batches, in eval mode."""
        return evaluation.predict(model, inputs, self.config, lengths, device=self.device)

    def predict_stream(self, model: nn.Module, inputs: Any, state: Any = None,
                       carry: bool = True) -> tuple[Tensor, Any]:
        """Outputs along streams ``(S, T, ...)`` in chunks of ``config.tbptt`` (in eval
        mode), starting from ``state`` (e.g. :attr:`carried_state`); returns them and the
        final state. ``carry=False`` gives every chunk a fresh state."""
        ensure(self.stateful, "predict_stream needs a stateful trainer (set tbptt)")
        return evaluation.predict_stream(model, inputs, int(self.config.tbptt), state, carry)

    def _metric_for(self, split: SplitData | None) -> str:
        if split is None:  # a DataLoader: the first example's target decides
            assert self._loader is not None
            if self.config.metric != "auto":
                return self.config.metric
            return auto_metric(self._loader.targets_sample())
        return evaluation.metric_for(self.config, split)

    # ------------------------------------------------------------------ run state
    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
               *, metric: str, meta: dict[str, Any] | None = None,
               callbacks: Sequence[Callback] | None = None) -> None:
        """Put this trainer at a run state: the model, its optimiser, where the run stands.

        ``fit`` starts every run this way; the lock-step engine calls it with a state it
        computed, so that :meth:`checkpoint_state` writes what a trainer would have.
        """
        self.model, self.optimizer, self.state = model, optimizer, state
        self.metric = metric
        self.meta = dict(meta or {})
        if callbacks is not None:
            self.callbacks = list(callbacks)

    def checkpoint_state(self, kind: str) -> dict[str, Any]:
        """Everything a resume needs, as plain values (see :mod:`rnnlab.train.checkpoint`)."""
        assert self.model is not None and self.optimizer is not None
        run = self.state.asdict()
        if run["loader_rng"] is None:  # only runs trained from a DataLoader have one
            del run["loader_rng"]
        if kind != "last":
            run["best_model"] = None
        return {
            "kind": kind,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            **run,
            "history": list(self.state.history),
            "metric": self.metric,
            "train_config": self.config.asdict(),
            "meta": self.meta,
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks
                          if c.state_dict()},
            **({} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore model, optimiser, global RNGs, run state and callbacks from a checkpoint
        dict (the model and optimiser must already be attached)."""
        assert self.model is not None and self.optimizer is not None
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        ensure(("scheduler" in ckpt) == (self.scheduler is not None),
              "cannot resume: the run was trained "
              + ("with" if "scheduler" in ckpt else "without")
              + " an LR scheduler; pass the same scheduler= to fit as the run had")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState.from_checkpoint(ckpt)
        if self.state.data_generator is not None:
            self._order.set_state(self.state.data_generator)
        self.meta = {**ckpt.get("meta", {}), **self.meta}
        for callback in self.callbacks:
            saved = ckpt.get("callbacks", {}).get(type(callback).__name__)
            if saved:
                callback.load_state_dict(saved)

    def _resume(self) -> int | None:
        assert self.out_dir is not None
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
        ensure(ckpt.get("n_train") == self.state.n_train,
              f"cannot resume from {path}: it was trained on {ckpt.get('n_train')} examples, "
              f"the training split now has {self.state.n_train}")
        try:
            self.load_state_dict(ckpt)
        except RuntimeError as err:
            raise RnnlabError(f"cannot resume from {path}: its parameters do not fit this "
                              f"model ({str(err).splitlines()[0]})") from err
        self.state.finished = False
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


class _Running:
    """Training loss (and, when streaming, the metric) since the last evaluation."""

    def __init__(self) -> None:
        self.loss, self.steps, self.metric, self.terms = 0.0, 0, 0.0, 0

    def add_loss(self, value: float) -> None:
        self.loss, self.steps = self.loss + value, self.steps + 1

    def add_metric(self, value: float, count: int) -> None:
        self.metric, self.terms = self.metric + value, self.terms + count

    def take(self) -> dict[str, float] | None:
        """The means so far (``None`` when no step was taken), and start again."""
        if not self.steps:
            return None
        out = {"loss": self.loss / self.steps}
        if self.terms:
            out["metric"] = self.metric / self.terms
        self.__init__()
        return out
