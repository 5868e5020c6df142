"""A user's :class:`~rnnlab.cells.RecurrentCell` subclass in the same model as the built-ins.

:class:`CellModel` is what :func:`rnnlab.models.build_model` builds for a built-in
cell, but takes the cell *class*, which need not be registered by name: input
(embedding or features) -> :class:`~rnnlab.layers.Recurrent` -> linear head, the
head reading each sequence's last valid state (``classify``, ``regress-last``) or
every step (``tag``, ``regress``). Modules are created in the same order (embedding,
recurrent layer, head) and the embedding is drawn Xavier-uniform the same way, so a
built-in cell class given here draws what ``build_model`` draws from the same seed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.cells.base import RecurrentCell
from rnnlab.layers import Recurrent


class CellModel(nn.Module):
    """Input -> ``Recurrent(cell_cls)`` -> linear head (see the module docstring).

    Args:
        cell_cls: the cell class (a subclass of :class:`RecurrentCell`).
        num_outputs: classes, or real values per step or sequence.
        head: ``classify``, ``tag``, ``regress`` or ``regress-last``.
        vocab_size: token inputs ``(N, L)`` (embedded to ``embedding_dim``), or
        input_size: feature inputs ``(N, L, input_size)``.
        hidden_size: the cell's ``H_out``; ``**cell_kwargs`` go to the cell.
    """

    def __init__(self, cell_cls: type[RecurrentCell], num_outputs: int, head: str,
                 vocab_size: int | None = None, input_size: int | None = None,
                 hidden_size: int = 32, embedding_dim: int = 32, **cell_kwargs: Any) -> None:
        super().__init__()
        self.head_kind = head
        self.embedding: nn.Embedding | None = None
        if vocab_size is not None:
            weight = nn.init.xavier_uniform_(torch.empty(vocab_size, embedding_dim))
            self.embedding = nn.Embedding.from_pretrained(weight, freeze=False)
            input_size = embedding_dim
        assert input_size is not None, "CellModel needs vocab_size or input_size"
        self.recurrent = Recurrent(cell_cls, input_size, hidden_size, batch_first=True,
                                   **cell_kwargs)
        self.head = nn.Linear(self.recurrent.output_size, num_outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        inputs = x if self.embedding is None else self.embedding(x)
        outputs, final = self.recurrent(inputs, lengths=lengths)
        if self.head_kind in ("tag", "regress"):
            return self.head(outputs)
        h_n = final[0] if isinstance(final, tuple) else final
        return self.head(h_n[-1])
