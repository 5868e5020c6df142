"""The observation layer: global hooks that watch every recurrent layer and cell, loss,
backward pass and optimizer step while unmodified user code runs.

Nothing here judges; it records into :class:`~rnnlab.doctor.records.Observations`.
:class:`Watcher` installs one global module forward hook (recurrent calls, cells),
optimizer step hooks (gradient norms, the step count and budget) and wrappers around
``Tensor.backward``, the loss functions, gradient clipping and the ``DataLoader``
iterator (batch size, and whether it shuffles).
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.optim import optimizer as _optimizer

from rnnlab.doctor import calls, replay
from rnnlab.doctor.records import (
    BudgetSpent,
    Observations,
    RecurrentCall,
    RootCall,
    StateCarry,
    cell_kind,
    describe,
    flat_state,
    is_cell,
    is_recurrent,
)
from rnnlab.doctor.source import UserCode, state_holder

LOSSES = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
          "binary_cross_entropy", "binary_cross_entropy_with_logits")
MAX_CARRIES = 8  # carries kept with their tensors; the rest are only counted


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
                 max_seconds: float | None = None, observe: int = 4) -> None:
        self.user = UserCode(user_files)
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.observe_every = max(1, (max_steps or 200) // max(1, observe))
        self.obs = Observations()
        self._recent: deque[RecurrentCall] = deque(maxlen=8)
        self._handles: list[Any] = []
        self._saved: dict[str, Any] = {}
        self._busy = False
        self._observed: set[int] = set()
        self._cell_records: dict[tuple[int, int], dict[str, Any]] = {}
        self._param_names: dict[int, str] = {}
        self._fetch: tuple[int, bool] | None = None  # (iteration, shuffled) of the last batch
        self._root_iteration = -1
        self._start = 0.0
        self.stopped = ""
        self.stopped_at: float | None = None

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
        for step, names, norms in self.obs.grad_norm_rows:
            for name, value in zip(names, norms.tolist(), strict=True):
                self.obs.grad_norms.setdefault(name, []).append((step, value))
        self.obs.grad_norm_rows.clear()

    def __enter__(self) -> Watcher:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def steps(self) -> int:
        """Complete optimizer steps; ``backward()`` calls when no optimizer is used."""
        return self.obs.steps if self.obs.step_started else self.obs.backward_calls

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def check_budget(self) -> None:
        """Raise :class:`BudgetSpent` when the budget is spent, and again at every later
        hook: a script that swallows it with a bare ``except:`` gets it once more."""
        if self.stopped:
            raise BudgetSpent(self.stopped)
        spent = self.max_steps is not None and self.steps >= self.max_steps
        late = self.max_seconds is not None and self.elapsed() >= self.max_seconds
        if spent or late:
            self.stopped = "step budget spent" if spent else "time budget spent"
            self.stopped_at = time.perf_counter()
            raise BudgetSpent(self.stopped)

    # --- the forward hook -------------------------------------------------------------
    @staticmethod
    def _enclosing_modules() -> list[tuple[nn.Module, tuple, dict]]:
        """Modules being called on the current stack, outermost first."""
        import sys

        code = nn.Module._call_impl.__code__
        found = []
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is code:
                loc = frame.f_locals
                found.append((loc.get("self"), loc.get("args", ()), loc.get("kwargs", {})))
            frame = frame.f_back
        return found[::-1]

    def _forward_hook(self, module: nn.Module, args: tuple, kwargs: dict, result: Any) -> Any:
        if self._busy:
            return None
        cell = is_cell(module)
        if not cell and not is_recurrent(module):
            return None
        enclosing = self._enclosing_modules()
        # enclosing[-1] is this very call; a call inside a recurrent layer or cell (rnnlab's
        # layer running its cells) is part of the outer call.
        if any(is_recurrent(m) or is_cell(m) for m, _, _ in enclosing[:-1]):
            return None
        self._busy = True
        try:
            result = self._record(module, args, kwargs, result, enclosing, cell)
        finally:
            self._busy = False
        self.check_budget()
        return result

    def _record(self, module: nn.Module, args: tuple, kwargs: dict, result: Any,
                enclosing: list, cell: bool) -> Any:
        obs = self.obs
        x, state = calls.split_call(args, kwargs)
        batch_first = bool(getattr(module, "batch_first", False))
        obs.modules.setdefault(id(module), describe(module))
        obs.kinds.setdefault(id(module), cell_kind(module))
        if cell:
            obs.cells.add(id(module))
        training = module.training and torch.is_grad_enabled()
        iteration = obs.backward_calls
        observe = training and iteration % self.observe_every == 0
        if cell:
            final = flat_state(result)
            if observe:
                record = self._cell_records.get((id(module), iteration))
                if record is None:
                    record = replay.new_record(iteration, 0, module, 0, 0)
                    self._cell_records[(id(module), iteration)] = record
                    obs.state_grads.append(record)
                replay.watch_cell_step(record, final)
        else:
            if (observe and isinstance(x, Tensor) and iteration not in self._observed
                    and not calls.has_lengths(args, kwargs)
                    and not getattr(module, "bidirectional", False)):
                self._observed.add(iteration)
                replayed = replay.replay_steps(module, x, state, batch_first, result)
                if replayed is not None:
                    result, steps = replayed
                    time_dim = 1 if batch_first else 0
                    record = replay.new_record(iteration, time_dim, module, len(steps),
                                               len(steps[0][1]) if steps else 0,
                                               x.detach().clone(), calls.detached(state))
                    replay.watch_steps(record, steps)
                    obs.state_grads.append(record)
                    del obs.state_grads[:-6]
            final = flat_state(result[1]) if isinstance(result, tuple) and len(result) > 1 \
                else []
        root, root_args, root_kwargs = enclosing[0] if enclosing else (module, args, kwargs)
        frames = None
        init = [t for t in flat_state(state) if isinstance(t, Tensor)]
        prev = self._carried_from(init, iteration, id(module)) if init else None
        new_iteration = not self._recent or self._recent[-1].iteration != iteration \
            or self._recent[-1].module_id != id(module)
        if prev is not None or new_iteration or not cell:
            frames = self.user.frames()
        call = RecurrentCall(
            index=obs.calls, iteration=iteration, module_id=id(module),
            module=describe(module), batch_first=batch_first, cell=cell,
            input=x.detach().clone() if isinstance(x, Tensor) else None,
            input_shape=tuple(x.shape) if isinstance(x, Tensor) else None,
            final=[t.detach() for t in final],
            where=self.user.locations(frames) if frames is not None else [],
            root_input=self._root_input(root, root_args),
            shuffled=bool(self._fetch and self._fetch[0] == iteration and self._fetch[1]))
        if prev is not None and frames is not None:
            self._add_carry(prev, call, init, frames)
        if self._recent and self._recent[-1].module_id == id(module) and \
                self._recent[-1].iteration == iteration and cell:
            self._recent[-1] = call  # a cell loop: keep the last step of each iteration
        else:
            self._recent.append(call)
        obs.calls += 1
        if training and root is not module and iteration != self._root_iteration:
            self._root_iteration = iteration
            for name, p in root.named_parameters():
                self._param_names.setdefault(id(p), name)
            obs.root = RootCall(
                module=root, args=calls.clone(tuple(root_args)),
                kwargs=calls.clone(dict(root_kwargs)),
                recurrent=module, recurrent_input_shape=call.input_shape,
                batch_first=batch_first, iteration=iteration, where=call.where,
                recurrent_input=call.input,
                state_shapes=[tuple(t.shape) for t in init])
        elif training and root is module and not cell and iteration != self._root_iteration:
            self._root_iteration = iteration
            obs.root = RootCall(
                module=module, args=(call.input,), kwargs={}, recurrent=module,
                recurrent_input_shape=call.input_shape, batch_first=batch_first,
                iteration=iteration, where=call.where, recurrent_input=call.input,
                state_shapes=[tuple(t.shape) for t in init])
        return result

    def _root_input(self, root: nn.Module, root_args: tuple) -> Tensor | None:
        x = calls.sequence_tensor(root_args)
        if x is None:
            return None
        last = self._recent[-1] if self._recent else None
        if last is not None and last.root_input is not None and \
                last.iteration == self.obs.backward_calls and last.root_input.shape == x.shape:
            return last.root_input  # the same batch, already copied for an earlier step
        return x.detach().clone()

    def _carried_from(self, init: list[Tensor], iteration: int,
                      module_id: int) -> RecurrentCall | None:
        for prev in reversed(self._recent):
            if prev.iteration >= iteration:
                continue  # same iteration: an encoder handing over to a decoder, a rollout
            if calls.same_state(init, prev.final) is not None:
                return prev
        return None

    def _add_carry(self, prev: RecurrentCall, call: RecurrentCall, init: list[Tensor],
                   frames: list) -> None:
        self.obs.carried.add(call.iteration)
        if len(self.obs.carries) >= MAX_CARRIES:
            return
        holder = state_holder(frames)
        numbers: dict[str, Any] = {}
        if holder is not None:
            numbers["holder"] = holder[0]
            numbers["holder_frame"] = holder[1]
            outer = frames[holder[1] + 1:holder[1] + 2]
            if outer:
                numbers["outer_line"] = self.user.locations(outer)[0].code
        self.obs.carries.append(StateCarry(
            index=call.index, previous=prev.index, iteration=call.iteration,
            previous_iteration=prev.iteration, how=calls.same_state(init, prev.final) or "",
            kind="", numbers=numbers, where=call.where, calls=(prev, call),
            prev_target=self.obs.targets.get(prev.iteration)))

    # --- optimizer, loss, backward ------------------------------------------------------
    def _record_loss(self, pred: Any, target: Any) -> None:
        if (self._busy or not torch.is_grad_enabled() or not isinstance(pred, Tensor)
                or not isinstance(target, Tensor)):
            return
        pred, target = pred.detach(), target.detach()
        it = self.obs.backward_calls
        self.obs.last_loss_call = (pred, target.clone())
        targets = self.obs.targets
        targets[it] = self.obs.last_loss_call[1]
        for old in [k for k in targets if k < it - 4]:
            del targets[old]
        for carry in self.obs.carries[-2:]:
            if carry.iteration == it and carry.target is None:
                carry.target = targets[it]
        if self.obs.metric and self.obs.metric[-1][0] == it:
            return  # an LBFGS closure evaluated again, or a second loss term
        name, value = calls.metric(pred, target)
        if name:
            self.obs.metric_name = name
            self.obs.metric.append((it, value))

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self.obs.step_started = True
        self.obs.in_step = True
        names, grads = [], []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None or p.grad.is_sparse:
                    continue
                name = self._param_names.get(id(p), f"param{len(self._param_names)}")
                self._param_names.setdefault(id(p), name)
                names.append(name)
                grads.append(p.grad.detach())
        if grads:  # one fused norm per step; read into floats once, at the end
            norms = torch.stack(torch._foreach_norm(grads)).double().cpu()
            self.obs.grad_norm_rows.append((self.obs.steps, names, norms))

    def _post_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self.obs.steps += 1
        self.obs.in_step = False
        self.check_budget()

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
                    watcher.obs.loss_where = watcher.user.locations(watcher.user.frames())
                if not math.isfinite(value):
                    watcher.obs.nonfinite.append(
                        (it, value, watcher.user.locations(watcher.user.frames())))
            out = original(tensor, *args, **kwargs)
            watcher.obs.backward_calls += 1
            if not watcher.obs.step_started:
                watcher.check_budget()
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
        from torch.utils.data import RandomSampler, SubsetRandomSampler, dataloader

        original = dataloader._BaseDataLoaderIter.__next__
        self._saved["loader"] = original
        obs = self.obs
        watcher = self

        def __next__(it: Any) -> Any:
            batch = original(it)
            sampler = getattr(it, "_index_sampler", None)
            sampler = getattr(sampler, "sampler", sampler)
            shuffled = isinstance(sampler, (RandomSampler, SubsetRandomSampler))
            watcher._fetch = (obs.backward_calls, shuffled)
            first = calls.first_tensor(batch)
            if first is not None and first.dim() >= 1:
                obs.loader_batch_sizes.append(int(first.shape[0]))
                del obs.loader_batch_sizes[:-16]
            obs.loader_shuffled.append(shuffled)
            del obs.loader_shuffled[:-16]
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
