"""The observation layer: global hooks that watch every recurrent module, loss, backward
pass and optimizer step while unmodified user code runs.

Nothing here judges; it records. :class:`Watcher` installs

- one global module forward hook (``register_module_forward_hook``): for the outermost
  recurrent call it records the initial state it was given, the final state it
  returned, its input, the user's line and the top-level model that made the call;
  for a loss module it records the prediction, the target and a metric;
- optimizer step hooks (``register_optimizer_step_pre_hook``/``post_hook``): per
  parameter gradient norms before each step, and the step budget after it;
- a wrapper around ``Tensor.backward``: the loss value and the iteration counter;
- a wrapper around the ``DataLoader`` iterator: the batch size the data comes in,
  which is the strongest evidence of which axis the user means as the batch.

On a few iterations the recurrent module's output is recomputed one time step at a
time, so that the gradient of the real loss with respect to the state at every step
can be read during the user's own ``backward()``: fused ``torch.nn.RNN/LSTM/GRU`` kernels
keep their per-step states hidden otherwise.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.optim import optimizer as _optimizer

from rnnlab.doctor.findings import Location

LOSSES = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
          "binary_cross_entropy", "binary_cross_entropy_with_logits")


class BudgetSpent(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the user's script once the step or time budget is spent.

    It derives from ``BaseException`` so that a script's own ``except Exception``
    does not swallow it.
    """


def is_recurrent(module: nn.Module) -> bool:
    """``torch.nn.RNN/LSTM/GRU`` or rnnlab's ``Recurrent`` layer."""
    if isinstance(module, nn.RNNBase):
        return True
    recurrent = _rnnlab_recurrent()
    return recurrent is not None and isinstance(module, recurrent)


@functools.lru_cache(maxsize=1)
def _rnnlab_recurrent() -> type | None:
    try:
        from rnnlab.layers import Recurrent
    except ImportError:
        return None
    return Recurrent


def describe(module: nn.Module) -> str:
    """A one-line description: ``LSTM(1, 16, batch_first=True)``."""
    extra = module.extra_repr().replace("\n", " ")
    return f"{type(module).__name__}({extra})"


def flat_state(state: Any) -> list[Tensor]:
    """The tensors of a state: ``h`` or ``(h, c)``; empty for ``None``."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for t in state if isinstance(t, Tensor)]
    return []


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _split_call(module: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, Any, bool]:
    """(input, initial state, has lengths) of a recurrent call, for torch and rnnlab."""
    x = args[0] if args else kwargs.get("input", kwargs.get("x"))
    if len(args) > 1:
        state = args[1]
    else:
        state = kwargs.get("hx", kwargs.get("state", kwargs.get("h0")))
    lengths = (len(args) > 2 and args[2] is not None) or kwargs.get("lengths") is not None
    return x, state, lengths


@dataclass
class RecurrentCall:
    """One outermost call of a recurrent module."""

    index: int
    iteration: int
    module: str
    batch_first: bool
    input: Tensor | None
    input_shape: tuple[int, ...] | None
    final: list[Tensor]
    where: list[Location]
    root_input: Tensor | None = None


@dataclass
class StateCarry:
    """A call whose initial state is the final state of a call in an earlier iteration."""

    index: int
    previous: int
    iteration: int
    previous_iteration: int
    how: str  # "same storage" | "equal values"
    kind: str  # "repeated" | "continuous" | "unrelated" | "undecidable"
    numbers: dict[str, float]
    where: list[Location]


@dataclass
class RootCall:
    """The top-level module around a recurrent call, with a copy of its arguments."""

    module: nn.Module
    args: tuple
    kwargs: dict
    recurrent: nn.Module
    recurrent_input_shape: tuple[int, ...] | None
    batch_first: bool
    iteration: int
    where: list[Location]


@dataclass
class Observations:
    """What a :class:`Watcher` saw."""

    calls: int = 0
    steps: int = 0
    backward_calls: int = 0
    modules: dict[int, str] = field(default_factory=dict)
    carries: list[StateCarry] = field(default_factory=list)
    root: RootCall | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    loss_where: list[Location] = field(default_factory=list)
    nonfinite: list[tuple[int, float, list[Location]]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)
    metric_name: str = ""
    last_loss_call: tuple[Tensor, Tensor] | None = None
    targets: dict[int, Tensor] = field(default_factory=dict)
    grad_norms: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    state_grads: list[dict[str, Any]] = field(default_factory=list)
    loader_batch_sizes: list[int] = field(default_factory=list)
    clipped: bool = False
    seconds: float = 0.0


class Watcher:
    """Installs the global hooks, records :class:`Observations`, enforces the budget.

    Args:
        user_files: paths of the user's source files; stack frames in them are
            reported as the place where something happens.
        max_steps: stop (raise :class:`BudgetSpent`) after this many optimizer steps
            (or ``backward()`` calls when the code uses no ``torch.optim`` optimizer).
        max_seconds: stop after this many seconds.
        observe: how many iterations get the step-by-step state-gradient replay.
    """

    def __init__(self, user_files: list[str] | None = None, max_steps: int | None = None,
                 max_seconds: float | None = None, observe: int = 6) -> None:
        self.user_files = {str(Path(f).resolve()) for f in (user_files or [])}
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.observe_every = max(1, (max_steps or 200) // max(1, observe))
        self.obs = Observations()
        self._recent: deque[RecurrentCall] = deque(maxlen=8)
        self._handles: list[Any] = []
        self._saved: dict[str, Any] = {}
        self._busy = False
        self._observed_iterations: set[int] = set()
        self._param_names: dict[int, str] = {}
        self._start = 0.0
        self._stopping = False
        self._user_cache: dict[str, bool] = {}
        self.stopped = ""

    # --- lifetime -----------------------------------------------------------------
    def install(self) -> Watcher:
        self._start = time.perf_counter()
        self._handles.append(_module.register_module_forward_hook(
            self._forward_hook, with_kwargs=True))
        self._handles.append(_optimizer.register_optimizer_step_pre_hook(self._pre_step))
        self._handles.append(_optimizer.register_optimizer_step_post_hook(self._post_step))
        self._patch_backward()
        self._patch_losses()
        self._patch_loader()
        self._patch_clipping()
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if "backward" in self._saved:
            torch.Tensor.backward = self._saved.pop("backward")
        if "loader" in self._saved:
            from torch.utils.data import dataloader
            dataloader._BaseDataLoaderIter.__next__ = self._saved.pop("loader")
        for name in ("clip_grad_norm_", "clip_grad_value_"):
            if name in self._saved:
                setattr(torch.nn.utils, name, self._saved.pop(name))
        for name in LOSSES:
            if f"F.{name}" in self._saved:
                setattr(F, name, self._saved.pop(f"F.{name}"))
        self.obs.seconds = time.perf_counter() - self._start

    def __enter__(self) -> Watcher:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def steps(self) -> int:
        return self.obs.steps if self.obs.steps else self.obs.backward_calls

    def _check_budget(self) -> None:
        if self._stopping:
            return
        spent = self.max_steps is not None and self.steps >= self.max_steps
        late = (self.max_seconds is not None
                and time.perf_counter() - self._start >= self.max_seconds)
        if spent or late:
            self._stopping = True
            self.stopped = "step budget spent" if spent else "time budget spent"
            raise BudgetSpent(self.stopped)

    # --- where in the user's code ---------------------------------------------------
    def where(self) -> list[Location]:
        """The user's frames on the current stack, outermost first."""
        frames = []
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if self._is_user(filename):
                frames.append(Location(filename, frame.f_lineno, _source_line(
                    filename, frame.f_lineno)))
            frame = frame.f_back
        return frames[::-1]

    def _is_user(self, filename: str) -> bool:
        known = self._user_cache.get(filename)
        if known is None:
            known = not filename.startswith("<") and (
                filename in self.user_files or str(Path(filename).resolve()) in self.user_files)
            self._user_cache[filename] = known
        return known

    @staticmethod
    def _enclosing_modules() -> list[tuple[nn.Module, tuple, dict]]:
        """Modules being called on the current stack, outermost first."""
        code = nn.Module._call_impl.__code__
        found = []
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is code:
                loc = frame.f_locals
                found.append((loc.get("self"), loc.get("args", ()), loc.get("kwargs", {})))
            frame = frame.f_back
        return found[::-1]

    # --- hooks ----------------------------------------------------------------------
    def _forward_hook(self, module: nn.Module, args: tuple, kwargs: dict, result: Any) -> Any:
        if self._busy:
            return None
        if not is_recurrent(module):
            return None
        enclosing = self._enclosing_modules()
        # enclosing[-1] is this very call; an inner call of a recurrent layer (rnnlab's
        # native backend running torch.nn.LSTM) is part of the outer call.
        if any(is_recurrent(m) for m, _, _ in enclosing[:-1]):
            return None
        self._busy = True
        try:
            result = self._record_recurrent(module, args, kwargs, result, enclosing)
        finally:
            self._busy = False
        self._check_budget()
        return result

    def _record_recurrent(self, module: nn.Module, args: tuple, kwargs: dict, result: Any,
                          enclosing: list) -> Any:
        obs = self.obs
        x, state, has_lengths = _split_call(module, args, kwargs)
        batch_first = bool(getattr(module, "batch_first", False))
        obs.modules.setdefault(id(module), describe(module))
        training = module.training and torch.is_grad_enabled()
        iteration = obs.backward_calls
        if (training and isinstance(x, Tensor) and not has_lengths
                and iteration not in self._observed_iterations
                and iteration % self.observe_every == 0
                and not getattr(module, "bidirectional", False)):
            self._observed_iterations.add(iteration)
            replayed = _replay(module, x, state, batch_first, result)
            if replayed is not None:
                result, steps = replayed
                self._watch_state_grads(steps, 1 if batch_first else 0, iteration)
        final = flat_state(result[1]) if isinstance(result, tuple) and len(result) > 1 else []
        where = self.where()
        root, root_args, root_kwargs = enclosing[0] if enclosing else (module, args, kwargs)
        root_input = _sequence_tensor(root_args)
        call = RecurrentCall(
            index=obs.calls, iteration=iteration, module=describe(module),
            batch_first=batch_first,
            input=x.detach().clone() if isinstance(x, Tensor) else None,
            input_shape=tuple(x.shape) if isinstance(x, Tensor) else None,
            final=[t.detach() for t in final], where=where,
            root_input=root_input.detach().clone() if root_input is not None else None)
        init = [t for t in flat_state(state) if bool(t.detach().ne(0).any())]
        if init:
            self._match_carry(call, init)
        self._recent.append(call)
        obs.calls += 1
        if training:
            for name, p in root.named_parameters():
                self._param_names.setdefault(id(p), name)
            obs.root = RootCall(
                module=root, args=_clone(tuple(root_args)), kwargs=_clone(dict(root_kwargs)),
                recurrent=module, recurrent_input_shape=call.input_shape,
                batch_first=batch_first, iteration=iteration, where=where)
        return result

    def _match_carry(self, call: RecurrentCall, init: list[Tensor]) -> None:
        for prev in reversed(self._recent):
            if prev.iteration >= call.iteration:
                continue  # same iteration: an encoder handing over to a decoder, a rollout
            how = _same_state(init, prev.final)
            if how is None:
                continue
            from rnnlab.doctor.probes import continuity, next_step_continuity

            kind, numbers = continuity(prev.input, call.input, call.batch_first)
            if kind != "repeated" and next_step_continuity(
                    prev.root_input, self.obs.targets.get(prev.iteration), call.root_input,
                    time_dim=self._time_dim(call)):
                kind, numbers = "continuous", {"next_step_target": 1.0}
            self.obs.carries.append(StateCarry(
                index=call.index, previous=prev.index, iteration=call.iteration,
                previous_iteration=prev.iteration, how=how, kind=kind, numbers=numbers,
                where=call.where))
            return

    @staticmethod
    def _time_dim(call: RecurrentCall) -> int | None:
        """The time axis of the root's input, when it lines up with the layer's input."""
        x, shape = call.root_input, call.input_shape
        if x is None or shape is None or x.dim() < 2 or tuple(x.shape[:2]) != shape[:2]:
            return None
        return 1 if call.batch_first else 0

    def _watch_state_grads(self, steps: list[tuple[Tensor, list[Tensor]]], time_dim: int,
                           iteration: int) -> None:
        record: dict[str, Any] = {"iteration": iteration, "time_dim": time_dim,
                                  "out": [None] * len(steps),
                                  "state": [[None] * len(s) for _, s in steps]}
        self.obs.state_grads.append(record)

        def keep(slot: list, k: int):
            def hook(grad: Tensor) -> None:
                grad = grad.detach()
                slot[k] = grad if slot[k] is None else slot[k] + grad
            return hook

        for t, (out, state) in enumerate(steps):
            if out.requires_grad:
                out.register_hook(keep(record["out"], t))
            for k, tensor in enumerate(state):
                if tensor.requires_grad:
                    tensor.register_hook(keep(record["state"][t], k))

    def _record_loss(self, pred: Any, target: Any) -> None:
        if (self._busy or not torch.is_grad_enabled() or not isinstance(pred, Tensor)
                or not isinstance(target, Tensor)):
            return
        pred, target = pred.detach(), target.detach()
        self.obs.last_loss_call = (pred.clone(), target.clone())
        targets = self.obs.targets
        targets[self.obs.backward_calls] = self.obs.last_loss_call[1]
        for old in [k for k in targets if k < self.obs.backward_calls - 4]:
            del targets[old]
        name, value = _metric(pred, target)
        if name:
            self.obs.metric_name = name
            self.obs.metric.append((self.obs.backward_calls, value))

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        step = self.obs.steps
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                name = self._param_names.get(id(p), f"param{len(self._param_names)}")
                self._param_names.setdefault(id(p), name)
                norm = float(p.grad.detach().double().norm())
                self.obs.grad_norms.setdefault(name, []).append((step, norm))

    def _post_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self.obs.steps += 1
        self._check_budget()

    # --- patches --------------------------------------------------------------------
    def _patch_backward(self) -> None:
        original = torch.Tensor.backward
        self._saved["backward"] = original
        watcher = self

        def backward(tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
            if tensor.numel() == 1 and not watcher._busy:
                value = float(tensor.detach())
                it = watcher.obs.backward_calls
                watcher.obs.losses.append((it, value))
                if not watcher.obs.loss_where:
                    watcher.obs.loss_where = watcher.where()
                if not math.isfinite(value):
                    watcher.obs.nonfinite.append((it, value, watcher.where()))
            out = original(tensor, *args, **kwargs)
            watcher.obs.backward_calls += 1
            if not watcher.obs.steps:
                watcher._check_budget()
            return out

        torch.Tensor.backward = backward

    def _patch_losses(self) -> None:
        # The loss modules (nn.CrossEntropyLoss...) call these functions too, so one
        # patch sees both styles and the target of every loss.
        for name in LOSSES:
            original = getattr(F, name)
            self._saved[f"F.{name}"] = original

            def loss(input: Any, target: Any, *args: Any, _original: Any = original,
                     **kwargs: Any) -> Any:
                self._record_loss(input, target)
                return _original(input, target, *args, **kwargs)

            setattr(F, name, loss)

    def _patch_loader(self) -> None:
        from torch.utils.data import dataloader

        original = dataloader._BaseDataLoaderIter.__next__
        self._saved["loader"] = original
        sizes = self.obs.loader_batch_sizes

        def __next__(it: Any) -> Any:
            batch = original(it)
            first = _first_tensor(batch)
            if first is not None and first.dim() >= 1:
                sizes.append(int(first.shape[0]))
                del sizes[:-16]
            return batch

        dataloader._BaseDataLoaderIter.__next__ = __next__

    def _patch_clipping(self) -> None:
        obs = self.obs
        for name in ("clip_grad_norm_", "clip_grad_value_"):
            original = getattr(torch.nn.utils, name)
            self._saved[name] = original

            def clip(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                obs.clipped = True
                return _original(*args, **kwargs)

            setattr(torch.nn.utils, name, clip)


def _sequence_tensor(args: Any) -> Tensor | None:
    for a in args:
        if isinstance(a, Tensor) and a.dim() >= 2:
            return a
    return None


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            found = _first_tensor(v)
            if found is not None:
                return found
    if isinstance(value, dict):
        for v in value.values():
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def _same_state(init: list[Tensor], final: list[Tensor]) -> str | None:
    """How an initial state is an earlier final state: same memory, or equal values."""
    for a in init:
        for b in final:
            if a.shape != b.shape:
                continue
            if a.data_ptr() == b.data_ptr():
                return "same storage"
            if torch.equal(a.detach(), b):
                return "equal values"
    return None


def _metric(pred: Tensor, target: Tensor) -> tuple[str, float]:
    """Accuracy for class targets, mean squared error for real targets."""
    if not target.dtype.is_floating_point and pred.dim() == target.dim() + 1:
        if pred.shape[:-1] == target.shape:
            return "accuracy", float((pred.argmax(-1) == target).float().mean())
        if pred.dim() >= 2 and pred.shape[:1] + pred.shape[2:] == target.shape:
            return "accuracy", float((pred.argmax(1) == target).float().mean())
        return "", 0.0
    if target.dtype.is_floating_point and pred.shape == target.shape:
        return "mse", float((pred.float() - target.float()).pow(2).mean())
    return "", 0.0


def _replay(module: nn.Module, x: Tensor, state: Any, batch_first: bool,
            result: Any) -> tuple[Any, list[tuple[Tensor, list[Tensor]]]] | None:
    """The module's output recomputed one step at a time, with every step's state.

    Returned in place of the fused output so that the user's ``backward()`` flows
    through the per-step states, where tensor hooks read the gradient. Kept only
    when it reproduces the original output.
    """
    time_dim = 1 if batch_first else 0
    if x.dim() != 3 or not isinstance(result, tuple) or not isinstance(result[0], Tensor):
        return None
    outputs, steps = [], []
    for t in range(x.shape[time_dim]):
        out, state = module.forward(x.narrow(time_dim, t, 1), state)
        outputs.append(out)
        steps.append((out, flat_state(state)))
    output = torch.cat(outputs, dim=time_dim)
    if output.shape != result[0].shape:
        return None
    if getattr(module, "dropout", 0) == 0 and not torch.allclose(
            output, result[0], atol=1e-4, rtol=1e-3):
        return None
    return (output, state, *result[2:]), steps


def state_grad_norms(record: dict[str, Any]) -> list[float]:
    """``|dL/dh_t|`` for every step of a replayed call: the gradient reaching the state
    at ``t`` through the output at ``t`` and through all later steps, over all layers
    (and the LSTM cell state)."""
    norms = []
    time_dim = record["time_dim"]
    for out, state in zip(record["out"], record["state"], strict=True):
        total = 0.0
        top = out.squeeze(time_dim) if out is not None else None
        for k, grad in enumerate(state):
            if grad is None:
                continue
            if k == 0 and top is not None and grad.dim() == 3 and grad[-1].shape == top.shape:
                # the layer's output at t *is* the top layer's h_t: one gradient, two paths
                grad = grad.clone()
                grad[-1] += top
                top = None
            total += float(grad.double().pow(2).sum())
        if top is not None:
            total += float(top.double().pow(2).sum())
        norms.append(math.sqrt(total))
    return norms


_LINES: dict[str, list[str]] = {}


def _source_line(filename: str, lineno: int) -> str:
    if filename not in _LINES:
        try:
            _LINES[filename] = Path(filename).read_text(encoding="utf-8").splitlines()
        except OSError:
            _LINES[filename] = []
    lines = _LINES[filename]
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""
