"""Models for the four shapes of task, built from one frozen :class:`ModelConfig`.

Each model is input -> :class:`~rnnlab.layers.Recurrent` -> linear head:

- input ``"tokens"``: ``(N, L)`` int64 ids through an ``nn.Embedding`` whose weight is
  Xavier-uniform (as the seed 004 DigitSum model initialises its embedding);
  ``"features"``: ``(N, L, input_size)`` floats straight into the recurrent layer (as
  the seed 001/002 models feed ``nn.RNN``).
- head ``"classify"``: logits ``(N, C)`` from each sequence's last valid state (for a
  bidirectional layer, the forward state at the last step joined with the backward
  state at the first); ``"regress-last"``: real values ``(N, num_outputs)`` from that
  same state, for one float target vector ``(N, num_outputs)`` per sequence (the
  adding problem); ``"tag"`` and ``"regress"``: ``(N, L, C)`` from every step.
  The head is a plain ``nn.Linear`` in every case; what the trainer does with its
  output follows the targets (integer: cross-entropy; float: squared error).

Modules are created in the order embedding, recurrent layer, head, so a seeded
``init="zeros"`` model draws exactly what the seed 004 model draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.cells import State, get_cell, init_names
from rnnlab.errors import RnnlabError, ensure
from rnnlab.layers import BACKENDS, Recurrent
from rnnlab.tasks.base import TaskSpec

INPUTS = ("tokens", "features")
HEADS = ("classify", "tag", "regress", "regress-last")
POOLS = ("last", "mean")
# The recurrent cell's biases: torch's two (b_ih and b_hh), the seed 004 SRN's one, none.
BIASES = {"two": True, "single": "single", "none": False}
NONLINEARITIES = ("tanh", "relu")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's architecture and initialisation.

    ``init`` names the cell initialiser (``zeros``, ``torch``, ``orthogonal``,
    ``normal`` with ``init_std``, ``xavier``); it applies to the recurrent cells only.
    ``nonlinearity`` is for ``srn`` and ``residual-srn``. ``vocab_size`` is required
    with ``input="tokens"``, ``input_size`` with ``input="features"``. ``pool`` is what a
    ``classify`` head reads: ``"last"``, each sequence's last valid state (for a
    bidirectional layer, the forward state at the last real token joined with the
    backward state at the first), or ``"mean"``, the layer's outputs averaged over the
    real tokens. ``bias``: ``"two"`` (torch's ``b_ih`` and ``b_hh``), ``"single"`` (one
    vector, as the seed 004 SRN; python backend only) or ``"none"``.
    """

    cell: str = "srn"
    hidden_size: int = 32
    num_layers: int = 1
    bidirectional: bool = False
    init: str = "torch"
    init_std: float = 0.001
    nonlinearity: str = "tanh"
    input: str = "tokens"
    vocab_size: int | None = None
    embedding_dim: int = 32
    input_size: int | None = None
    head: str = "classify"
    num_outputs: int | None = None
    backend: str = "python"
    pool: str = "last"
    bias: str = "two"

    def __post_init__(self) -> None:
        cell_cls = get_cell(self.cell)
        ensure(_positive_int(self.hidden_size),
              f"hidden_size must be a positive integer, got {self.hidden_size!r}")
        ensure(_positive_int(self.num_layers),
              f"num_layers must be a positive integer, got {self.num_layers!r}")
        ensure(isinstance(self.bidirectional, bool),
              f"bidirectional must be true or false, got {self.bidirectional!r}")
        ensure(self.init in init_names(),
              f"unknown initialiser {self.init!r}; known initialisers: "
              + ", ".join(init_names()))
        ensure(isinstance(self.init_std, (int, float)) and self.init_std > 0,
              f"init_std must be a positive number, got {self.init_std!r}")
        ensure(self.nonlinearity in NONLINEARITIES,
              f"unknown nonlinearity {self.nonlinearity!r}; known: relu, tanh")
        ensure(self.nonlinearity == "tanh" or self.cell in ("srn", "residual-srn"),
              f"nonlinearity={self.nonlinearity!r} applies only to srn and residual-srn, "
              f"not {self.cell!r}")
        ensure(self.input in INPUTS,
              f"unknown input {self.input!r}; known inputs: " + ", ".join(INPUTS))
        if self.input == "tokens":
            ensure(_positive_int(self.vocab_size),
                  f"token input needs vocab_size, a positive integer; got {self.vocab_size!r}")
            ensure(_positive_int(self.embedding_dim),
                  f"embedding_dim must be a positive integer, got {self.embedding_dim!r}")
        else:
            ensure(_positive_int(self.input_size),
                  f"feature input needs input_size, a positive integer; got {self.input_size!r}")
        ensure(self.head in HEADS, f"unknown head {self.head!r}; known heads: " + ", ".join(HEADS))
        ensure(_positive_int(self.num_outputs),
              f"num_outputs must be a positive integer, got {self.num_outputs!r}")
        ensure(self.bias in BIASES,
              f"unknown bias {self.bias!r}; known: " + ", ".join(BIASES))
        ensure(self.bias != "single" or self.backend == "python",
              "bias='single' (one bias vector) has no torch.nn twin, so it needs "
              "backend='python'")
        ensure(self.pool in POOLS, f"unknown pool {self.pool!r}; known: " + ", ".join(POOLS))
        ensure(self.pool == "last" or self.head == "classify",
              f"pool={self.pool!r} applies to the classify head only, not {self.head!r}")
        ensure(self.backend in BACKENDS,
              f"unknown backend {self.backend!r}; known backends: " + ", ".join(BACKENDS))
        ensure(self.backend == "python" or cell_cls.native is not None,
              f"cell {self.cell!r} has no torch.nn twin, so it cannot run with "
              "backend='native'; use backend='python'")

    @property
    def recurrent_input_size(self) -> int:
        """Features of each step entering the recurrent layer."""
        return self.embedding_dim if self.input == "tokens" else int(self.input_size)

    def asdict(self) -> dict[str, Any]:
        """Plain values (what checkpoints and ``summary.json`` store)."""
        return dataclasses.asdict(self)


def model_config_for(spec: TaskSpec, **overrides: Any) -> ModelConfig:
    """A :class:`ModelConfig` shaped for a task's data (``task.spec``): its input,
    vocabulary or input size, head and outputs; ``overrides`` choose the rest (cell,
    sizes, initialiser...) and may change any field."""
    shape: dict[str, Any] = {"input": spec.input, "head": spec.head,
                             "num_outputs": spec.num_outputs}
    if spec.input == "tokens":
        shape["vocab_size"] = spec.vocab_size
    else:
        shape["input_size"] = spec.input_size
    return ModelConfig(**{**shape, **overrides})


class SequenceModel(nn.Module):
    """Input (embedding or features) -> :class:`Recurrent` -> linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding: nn.Embedding | None = None
        if config.input == "tokens":
            # Drawn straight into an empty matrix (no default normal draw first), so
            # the random stream matches the seed 004 model's.
            weight = nn.init.xavier_uniform_(torch.empty(int(config.vocab_size),
                                                         config.embedding_dim))
            self.embedding = nn.Embedding.from_pretrained(weight, freeze=False)
        cell_kwargs: dict[str, Any] = {"init": config.init, "init_std": config.init_std,
                                       "bias": BIASES[config.bias]}
        if config.cell in ("srn", "residual-srn"):
            cell_kwargs["nonlinearity"] = config.nonlinearity
        self.recurrent = Recurrent(config.cell, config.recurrent_input_size,
                                   config.hidden_size, num_layers=config.num_layers,
                                   bidirectional=config.bidirectional, batch_first=True,
                                   backend=config.backend, **cell_kwargs)
        self.head = nn.Linear(self.recurrent.output_size, int(config.num_outputs))

    def embed(self, x: Tensor) -> Tensor:
        """The recurrent layer's input ``(N, L, H_in)`` for the model input ``x``."""
        if self.embedding is None:
            return x
        if x.dim() != 2 or x.is_floating_point() or x.is_complex():
            raise RnnlabError(f"expected token ids of shape (N, L) and an integer dtype, "
                              f"got shape {tuple(x.shape)} and {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.embedding.num_embeddings):
            raise RnnlabError(f"token ids must lie in 0..{self.embedding.num_embeddings - 1}, "
                              f"got {int(x.min())}..{int(x.max())}")
        return self.embedding(x)

    def readout(self, outputs: Tensor, final_state: State, lengths: Tensor | None) -> Tensor:
        raise NotImplementedError

    def last_state(self, final_state: State) -> Tensor:
        """``(N, D*H)``: each sequence's last valid state of the last layer (forward state
        at the last valid step, joined with the backward state at step 0)."""
        h_n = final_state[0] if isinstance(final_state, tuple) else final_state
        # The last layer's directions are the last D rows: forward, then backward.
        return torch.cat(list(h_n[-self.recurrent.num_directions:]), dim=-1)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, State]:
        outputs, final_state = self.recurrent(self.embed(x), state=state, lengths=lengths)
        result = self.readout(outputs, final_state, lengths)
        return (result, final_state) if return_state else result


class SequenceClassifier(SequenceModel):
    """Logits ``(N, C)`` from each sequence's last valid state (the seed 004 model), or
    from its outputs averaged over its real steps (``pool="mean"``)."""

    def readout(self, outputs: Tensor, final_state: State, lengths: Tensor | None) -> Tensor:
        if self.config.pool == "mean":
            # Outputs past a sequence's end are zero, so the sum covers its real steps.
            steps = outputs.new_full((outputs.shape[0], 1), outputs.shape[1]) \
                if lengths is None else lengths.reshape(-1, 1).to(outputs.dtype)
            return self.head(outputs.sum(1) / steps)
        return self.head(self.last_state(final_state))


class SequenceTagger(SequenceModel):
    """Logits ``(N, L, C)``: one class per step."""

    def readout(self, outputs: Tensor, final_state: State, lengths: Tensor | None) -> Tensor:
        return self.head(outputs)


class SequenceRegressor(SequenceModel):
    """Values ``(N, L, num_outputs)``: one real vector per step."""

    def readout(self, outputs: Tensor, final_state: State, lengths: Tensor | None) -> Tensor:
        return self.head(outputs)


class LastStateRegressor(SequenceModel):
    """Values ``(N, num_outputs)`` from each sequence's last valid state: one real
    vector per sequence (head ``"regress-last"``)."""

    def readout(self, outputs: Tensor, final_state: State, lengths: Tensor | None) -> Tensor:
        return self.head(self.last_state(final_state))


MODELS: dict[str, type[SequenceModel]] = {
    "classify": SequenceClassifier,
    "tag": SequenceTagger,
    "regress": SequenceRegressor,
    "regress-last": LastStateRegressor,
}


def build_model(config: ModelConfig) -> SequenceModel:
    """A new model for ``config``, initialised from torch's global RNG (seed first)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    return MODELS[config.head](config)


__all__ = ["MODELS", "LastStateRegressor", "ModelConfig", "SequenceClassifier", "SequenceModel",
           "SequenceRegressor", "SequenceTagger", "build_model", "model_config_for"]
