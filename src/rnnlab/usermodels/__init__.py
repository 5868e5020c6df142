"""Bring your own model: a user's cell or ``nn.Module`` factory, checked before training.

``load_model("path/to/file.py:MyCell")`` or ``load_model("pkg.mod:build")`` gives a
:class:`UserModel`. A :class:`~rnnlab.cells.RecurrentCell` subclass is trained in the
:class:`~rnnlab.layers.Recurrent` layer like the built-in cells (:class:`CellModel`).
Anything else callable is a factory, called with keyword arguments that describe the
task (:func:`model_kwargs`: ``vocab_size`` or ``input_size``, ``num_outputs``,
``head``, ``length``), of which it receives those its signature names (all of them if
it takes ``**kwargs``). It must return an ``nn.Module`` mapping ``(N, L)`` tokens or
``(N, L, F)`` features to the head's output: ``(N, C)`` for ``classify`` and
``regress-last``, ``(N, L, C)`` for ``tag`` and ``regress``.

:meth:`UserModel.build` checks all of that on a probe batch before any training and
turns each mistake into one :class:`RnnlabError` sentence naming the file, the
function and what was wrong. The trainer calls ``model(inputs)`` (and passes
``lengths=`` only when the data have lengths), so a plain module needs no wrapper;
one whose ``forward`` takes no ``lengths`` is refused for data that have them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.cells.base import RecurrentCell
from rnnlab.errors import RnnlabError
from rnnlab.usermodels.cell_model import CellModel
from rnnlab.usermodels.loading import load_object, source_hash, split_spec

HEADS = ("classify", "tag", "regress", "regress-last")


@dataclass(frozen=True)
class UserModel:
    """A loaded user model: what it is, where it came from, and its source hash."""

    spec: str
    name: str
    obj: Any
    kind: str  # "cell" or "factory"
    path: Path | None
    source_hash: str  # of the defining file ("" when it has none, e.g. a built-in module)

    @property
    def label(self) -> str:
        """``file.py:name`` (or ``module:name``), for messages."""
        return f"{self.path}:{self.name}" if self.path is not None else self.spec

    def build(self, kwargs: dict[str, Any], probe: Tensor | None = None,
              probe_lengths: Tensor | None = None, **cell_options: Any) -> nn.Module:
        """A new module for the task described by ``kwargs`` (see :func:`model_kwargs`).

        With ``probe`` (a few inputs of the task) the module is run once and its output
        shape checked against the head. ``cell_options`` (``hidden_size``,
        ``embedding_dim``, ``init``...) apply to a cell only.
        """
        _check_kwargs(kwargs)
        if self.kind == "cell":
            module = self._build_cell(kwargs, cell_options)
        else:
            module = self._call_factory(kwargs)
        if probe is not None:
            check_output(module, kwargs, probe, probe_lengths, self.label)
        return module

    def _build_cell(self, kwargs: dict[str, Any], options: dict[str, Any]) -> nn.Module:
        sizes = {k: kwargs[k] for k in ("vocab_size", "input_size") if k in kwargs}
        try:
            return CellModel(self.obj, kwargs["num_outputs"], kwargs["head"], **sizes, **options)
        except RnnlabError:
            raise
        except Exception as err:
            raise RnnlabError(f"{self.label}: building the cell raised {type(err).__name__}: "
                              f"{_first_line(err)}") from None

    def _call_factory(self, kwargs: dict[str, Any]) -> nn.Module:
        given = _accepted(self.obj, kwargs)
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
        try:
            module = self.obj(**given)
        except Exception as err:
            raise RnnlabError(f"{self.label}({shown}) raised {type(err).__name__}: "
                              f"{_first_line(err)}") from None
        if not isinstance(module, nn.Module):
            raise RnnlabError(f"{self.label}({shown}) returned a {type(module).__name__}, not "
                              "a torch.nn.Module")
        if not any(p.requires_grad for p in module.parameters()):
            raise RnnlabError(f"{self.label}({shown}) returned a module with no trainable "
                              "parameters")
        return module


def load_model(spec: str) -> UserModel:
    """Load ``path/to/file.py:Name`` or ``package.module:Name`` (see the module docstring)."""
    obj, name, path = load_object(spec)
    if isinstance(obj, type) and issubclass(obj, RecurrentCell):
        kind = "cell"
    elif callable(obj):
        kind = "factory"
    else:
        where, _ = split_spec(spec)
        raise RnnlabError(f"{where}:{name} is of type {type(obj).__name__}, neither a "
                          "RecurrentCell subclass nor a function returning an nn.Module")
    return UserModel(spec, name, obj, kind, path, "" if path is None else source_hash(path))


def model_kwargs(task: Any, length: int) -> dict[str, Any]:
    """The keyword arguments describing ``task`` to a factory; ``length`` is the steps
    of its inputs (for ``copy`` that is more than its ``length`` field)."""
    kwargs: dict[str, Any] = {"num_outputs": int(task.num_outputs), "head": task.head,
                              "length": int(length)}
    if task.input == "tokens":
        kwargs["vocab_size"] = int(task.vocab_size)
    else:
        kwargs["input_size"] = int(task.input_size)
    return kwargs


def expected_shape(kwargs: dict[str, Any], batch: int, steps: int) -> tuple[int, ...]:
    per_step = kwargs["head"] in ("tag", "regress")
    return (batch, steps, kwargs["num_outputs"]) if per_step else (batch, kwargs["num_outputs"])


def check_output(module: nn.Module, kwargs: dict[str, Any], probe: Tensor,
                 lengths: Tensor | None, label: str) -> None:
    """Run ``module`` on ``probe`` as the trainer would and check the head's shape."""
    params = _parameters(module.forward)
    takes_lengths = params is None or "lengths" in params or any(
        p.kind is p.VAR_KEYWORD for p in params.values())
    if lengths is not None and not takes_lengths:
        raise RnnlabError(f"{label}: the model's forward takes no lengths argument, but the "
                          "task's sequences have different lengths")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe) if lengths is None else module(probe, lengths=lengths)
    except Exception as err:
        raise RnnlabError(f"{label}: the model failed on a probe batch of shape "
                          f"{tuple(probe.shape)}: {type(err).__name__}: {_first_line(err)}"
                          ) from None
    finally:
        module.train(was_training)
    out = out[0] if isinstance(out, tuple) else out
    want = expected_shape(kwargs, probe.shape[0], probe.shape[1])
    if not isinstance(out, Tensor) or not out.is_floating_point():
        got = f"a {out.dtype} tensor" if isinstance(out, Tensor) else f"a {type(out).__name__}"
        raise RnnlabError(f"{label}: the model returned {got} for inputs "
                          f"{tuple(probe.shape)}; head {kwargs['head']!r} needs a float "
                          f"tensor of shape {want}")
    if tuple(out.shape) != want:
        raise RnnlabError(f"{label}: the model maps inputs {tuple(probe.shape)} to "
                          f"{tuple(out.shape)}, but head {kwargs['head']!r} needs {want}")


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (each shared tensor once), the figure models are matched by."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def state_size(module: nn.Module) -> int | None:
    """Numbers carried from step to step, per sequence, when it can be told.

    A module's own ``state_size`` attribute wins; otherwise the recurrent layers found
    inside (rnnlab's :class:`~rnnlab.layers.Recurrent`, ``nn.RNN/LSTM/GRU``) are added
    up: hidden size x layers x directions, twice for an LSTM (``h`` and ``c``). ``None``
    for a module with neither (a non-recurrent model, or one that does not say).
    """
    from rnnlab.layers import Recurrent

    declared = getattr(module, "state_size", None)
    if isinstance(declared, int):
        return declared
    total, found = 0, False
    for sub in module.modules():
        if isinstance(sub, Recurrent):
            per = 2 if sub.cell_cls.state_is_tuple else 1
            total += per * sub.hidden_size * sub.num_layers * sub.num_directions
            found = True
        elif isinstance(sub, nn.RNNBase):
            per = 2 if sub.mode == "LSTM" else 1
            total += per * sub.hidden_size * sub.num_layers * (2 if sub.bidirectional else 1)
            found = True
    return total if found else None


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    if kwargs.get("head") not in HEADS:
        raise RnnlabError(f"unknown head {kwargs.get('head')!r}; known heads: {', '.join(HEADS)}")
    if ("vocab_size" in kwargs) == ("input_size" in kwargs):
        raise RnnlabError("a model is described by vocab_size (token inputs) or input_size "
                          "(feature inputs), exactly one of them")


def _parameters(fn: Any) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` can take: all with ``**kwargs``, else those it names."""
    params = _parameters(fn)
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


__all__ = ["CellModel", "UserModel", "check_output", "count_parameters", "expected_shape",
           "load_model", "model_kwargs", "source_hash", "state_size"]
