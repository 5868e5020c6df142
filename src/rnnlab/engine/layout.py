"""The kernel's flat parameter layout, and conversion to and from PyTorch tensors.

One model's parameters are one contiguous float32 vector, so the optimiser runs
over a single buffer and the kernel finds every tensor at a fixed offset. The
order is::

    embedding [V, E'], weight_ih^T [E', G*H'], weight_hh^T [H', G*H'],
    bias_ih [G*H'], bias_hh [G*H'], head weight^T [H', C'], head bias [C']

Matrices read on the forward pass are transposed (input-major) so the kernel's
inner loops run over contiguous output rows. ``E'``, ``H'`` and ``C'`` are the
embedding, hidden and class counts rounded up to a multiple of 16 (one 512-bit
vector); each gate block is padded on its own. A model on real-valued features has
no embedding (``V = 0``) and ``E'`` is its feature count, unpadded (the kernel only
needs whole vectors along outputs, not along the features it sums over). Padded
classes (or outputs) are left out of the loss, so their values never matter and their
gradients are zero. The padding of units is exact, not approximate: a padded unit
has zero weights in and out, so its pre-activation is 0, its state stays 0 for
every cell (``tanh(0) = 0``; an LSTM's ``c = f*0 + i*tanh(0) = 0``; a GRU's
``h = (1-z)*0 + z*0``), every gradient reaching it is a product with a zero
weight, and Adam or SGD leave a parameter with zero gradient (and zero value,
under weight decay) at zero. Optimiser state uses the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CELL_CODES = {"srn": 0, "residual-srn": 1, "lstm": 2, "gru": 3}
# The heads the kernel trains (kernel.c's RN_CLASSIFY, RN_TAG, RN_REGRESS).
HEAD_CODES = {"classify": 0, "tag": 1, "regress-last": 2}
GATES = {"srn": 1, "residual-srn": 1, "lstm": 4, "gru": 3}
NAMES = ("embedding", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "head_weight", "head_bias")
VECTOR = 16


def _round_up(n: int) -> int:
    return (n + VECTOR - 1) // VECTOR * VECTOR


@dataclass(frozen=True)
class Shape:
    """Sizes of one model: vocabulary, embedding, hidden, classes (outputs), sequence
    length; its head; ``features`` > 0 for real-valued inputs (then ``vocab`` is 0 and
    ``embed`` is the feature count)."""

    cell: str
    vocab: int
    embed: int
    hidden: int
    classes: int
    length: int
    relu: bool = False
    head: str = "classify"
    features: int = 0

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def names(self) -> tuple[str, ...]:
        """The tensors this model has (:data:`NAMES`, without the embedding for features)."""
        return NAMES[1:] if self.features else NAMES

    @property
    def embed_padded(self) -> int:
        return self.embed if self.features else _round_up(self.embed)

    @property
    def hidden_padded(self) -> int:
        return _round_up(self.hidden)

    @property
    def classes_padded(self) -> int:
        return _round_up(self.classes)

    def kernel_sizes(self) -> list[int]:
        """Element counts of the seven tensors in the flat vector."""
        e, h, g, c = self.embed_padded, self.hidden_padded, self.gates, self.classes_padded
        return [self.vocab * e, e * g * h, h * g * h, g * h, g * h, h * c, c]

    @property
    def num_params(self) -> int:
        return sum(self.kernel_sizes())

    def torch_shapes(self) -> dict[str, tuple[int, ...]]:
        gh = self.gates * self.hidden
        return {
            "embedding": (self.vocab, self.embed),
            "weight_ih": (gh, self.embed),
            "weight_hh": (gh, self.hidden),
            "bias_ih": (gh,),
            "bias_hh": (gh,),
            "head_weight": (self.classes, self.hidden),
            "head_bias": (self.classes,),
        }


def _pad_gates(t: Tensor, shape: Shape, cols: int | None, padded: int | None = None) -> Tensor:
    """``[G*H, cols]`` (or ``[G*H]``) -> ``[G*H', padded]`` with zero padding per gate
    (``padded`` defaults to ``cols`` rounded up to whole vectors)."""
    g, h, hp = shape.gates, shape.hidden, shape.hidden_padded
    if cols is None:
        out = t.new_zeros(g, hp)
        out[:, :h] = t.reshape(g, h)
        return out.reshape(g * hp)
    cp = _round_up(cols) if padded is None else padded
    out = t.new_zeros(g, hp, cp)
    out[:, :h, :cols] = t.reshape(g, h, cols)
    return out.reshape(g * hp, cp)


def _unpad_gates(t: Tensor, shape: Shape, cols: int | None) -> Tensor:
    g, h, hp = shape.gates, shape.hidden, shape.hidden_padded
    if cols is None:
        return t.reshape(g, hp)[:, :h].reshape(g * h).clone()
    return t.reshape(g, hp, -1)[:, :h, :cols].reshape(g * h, cols).clone()


def flatten(shape: Shape, tensors: dict[str, Tensor]) -> Tensor:
    """PyTorch-layout tensors (keys ``shape.names``) -> one flat kernel-layout vector."""
    expected = shape.torch_shapes()
    t = {}
    for name in shape.names:
        value = tensors[name].detach().to(torch.float32).cpu()
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {expected[name]}")
        t[name] = value
    emb = t["weight_ih"].new_zeros(shape.vocab, shape.embed_padded)
    if not shape.features:
        emb[:, :shape.embed] = t["embedding"]
    head = t["head_weight"].new_zeros(shape.classes_padded, shape.hidden_padded)
    head[:shape.classes, :shape.hidden] = t["head_weight"]
    head_bias = t["head_bias"].new_zeros(shape.classes_padded)
    head_bias[:shape.classes] = t["head_bias"]
    parts = [
        emb,
        _pad_gates(t["weight_ih"], shape, shape.embed, shape.embed_padded).t(),
        _pad_gates(t["weight_hh"], shape, shape.hidden).t(),
        _pad_gates(t["bias_ih"], shape, None),
        _pad_gates(t["bias_hh"], shape, None),
        head.t(),
        head_bias,
    ]
    return torch.cat([p.reshape(-1) for p in parts]).contiguous()


def unflatten(shape: Shape, flat: Tensor) -> dict[str, Tensor]:
    """The inverse of :func:`flatten`: fresh PyTorch-layout tensors, padding dropped."""
    chunks = torch.split(flat.detach(), shape.kernel_sizes())
    e, ep, h, hp = shape.embed, shape.embed_padded, shape.hidden, shape.hidden_padded
    c, cp = shape.classes, shape.classes_padded
    gh = shape.gates * hp
    tensors = {
        "embedding": chunks[0].reshape(shape.vocab, ep)[:, :e].clone(),
        "weight_ih": _unpad_gates(chunks[1].reshape(ep, gh).t(), shape, e),
        "weight_hh": _unpad_gates(chunks[2].reshape(hp, gh).t(), shape, h),
        "bias_ih": _unpad_gates(chunks[3], shape, None),
        "bias_hh": _unpad_gates(chunks[4], shape, None),
        "head_weight": chunks[5].reshape(hp, cp).t()[:c, :h].clone(),
        "head_bias": chunks[6][:c].clone(),
    }
    return {name: tensors[name] for name in shape.names}
