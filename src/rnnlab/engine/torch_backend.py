"""The pure-PyTorch backend: members of one shape in lock-step, the cells' own recurrence.

Every weight carries a leading model dimension ``M``; each time step applies the
cell's update function from :mod:`rnnlab.cells` (``srn_update``, ``lstm_update``, ...,
the functions the cells themselves run) to all members at once with stacked weights
(:func:`rnnlab.cells.base.linear` makes each product one batched matmul), asking it
for a ``trace`` of its gates. The backward pass through time is written out from
those traces: autograd on the same forward was measured 1.0 to 3.4 times slower per
step for these small models (``benchmarks/torch_backend_autograd.py``), its
per-operation bookkeeping being most of the cost. Adam or SGD then runs once over
the stacked flat parameters ``[M, P]`` with per-member learning rate, momentum,
weight decay and clipping. It computes what the C kernel computes, in the same
layout, and is used where the kernel cannot be built (no C compiler) or when asked for.

Members are grouped by everything that fixes tensor shapes and the schedule:
cell, sizes, sequence length, training-set size, batch size, steps and
evaluation points. Within a group nothing mixes across members, so a member's
numbers do not depend on who else is in its group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.cells import get_cell
from rnnlab.engine.backends import Group
from rnnlab.engine.layout import Shape
from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.engine.population import Member

INF = float("inf")


def supports(shape: Shape) -> bool:
    """Whether this backend trains ``shape``: token inputs and a classify head (the C
    kernel also trains per-step and regression heads and feature inputs)."""
    return shape.head == "classify" and not shape.features


class TorchBackend:
    """Lock-step groups of members: the cells' recurrence on stacked weights, BPTT by hand."""

    name = "torch"
    parallel = False

    def group(self, members: list[Member]) -> list[Group]:
        by_key: dict[tuple, list[Member]] = {}
        for m in members:
            if not supports(m.shape):
                inputs = "features" if m.shape.features else "tokens"
                raise RnnlabError(f"{m.job.name or f'job {m.index}'}: the engine's torch "
                                  "backend trains token classification only, not a "
                                  f"{m.shape.head!r} head on {inputs}; the C kernel trains "
                                  "it (install gcc)")
            cfg, s = m.config, m.shape
            key = (s, cfg.optimizer, cfg.reduction, cfg.batch_size, m.schedule.n_train,
                   m.schedule.total_steps, tuple(m.schedule.evals))
            by_key.setdefault(key, []).append(m)
        groups = []
        for group_members in by_key.values():
            state = _GroupState(group_members)
            for i, m in enumerate(group_members):
                # members see rows of the stacked tensors, so snapshots and outputs work unchanged
                m.params, m.exp_avg = state.params[i], state.exp_avg[i]
                m.exp_avg_sq = state.exp_avg_sq[i]
            groups.append(Group(group_members, state=state))
        return groups

    def train(self, group: Group, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        state: _GroupState = group.state
        losses = torch.empty(len(group.members), stop - start)
        # a member's failing step: a non-finite loss, or an update to non-finite parameters
        bad = torch.zeros(len(group.members), stop - start, dtype=torch.bool)
        for s in range(start, stop):
            losses[:, s - start] = state.step(s)
            bad[:, s - start] = ~torch.isfinite(state.params).all(dim=1)
        values = losses.numpy()
        bad = bad.numpy() | ~np.isfinite(values)
        failed = np.where(bad.any(axis=1), bad.argmax(axis=1), -1)
        return values, failed

    def logits(self, group: Group, i: int, tokens: np.ndarray,
               params: Tensor | None = None) -> Tensor:
        state: _GroupState = group.state
        flat = state.params[i] if params is None else params
        params = _unpack(state.shape, flat.unsqueeze(0))
        x = torch.from_numpy(tokens).long().unsqueeze(0)
        with torch.no_grad():
            logits = _forward(state.shape, params, x)[0]
        return logits[0]


def _unpack(shape: Shape, flat: Tensor) -> dict[str, Tensor]:
    """Views of the stacked flat vectors ``[M, P]`` as kernel-layout matrices."""
    m = flat.shape[0]
    e, h, gh, v, c = (shape.embed_padded, shape.hidden_padded,
                      shape.gates * shape.hidden_padded, shape.vocab, shape.classes_padded)
    parts = torch.split(flat, shape.kernel_sizes(), dim=1)
    return {
        "emb": parts[0].view(m, v, e), "wihT": parts[1].view(m, e, gh),
        "whhT": parts[2].view(m, h, gh), "bih": parts[3], "bhh": parts[4],
        "fcwT": parts[5].view(m, h, c), "fcb": parts[6],
    }


def _forward(shape: Shape, p: dict[str, Tensor], x: Tensor,
             traces: list[dict[str, Tensor]] | None = None) -> tuple[Tensor, list[Tensor]]:
    """Logits ``[M, B, C]`` for tokens ``x [M, B, L]`` (padded classes dropped) and the
    states ``h_0 .. h_L``; with ``traces``, each step's trace is appended to it.

    The input projection ``W_ih x + b_ih`` of a token is a row of ``emb @ W_ih^T + b_ih``,
    computed once per vocabulary entry and looked up; the recurrence is the cell's own
    update function (``cell.recurrence``) on stacked weights.
    """
    m, b, length = x.shape
    cell = get_cell(shape.cell)
    options = ({"nonlinearity": "relu" if shape.relu else "tanh"}
               if shape.cell in ("srn", "residual-srn") else {})
    table = torch.bmm(p["emb"], p["wihT"]) + p["bih"].unsqueeze(1)  # [M, V, GH]
    index = x + (torch.arange(m) * shape.vocab).view(m, 1, 1)
    gi_all = table.reshape(m * shape.vocab, -1)[index]  # [M, B, L, GH]
    weight_hh = p["whhT"].transpose(1, 2)  # [M, GH, H]: the cells' orientation, a view
    h = gi_all.new_zeros((m, b, shape.hidden_padded))
    state = (h, h) if cell.state_is_tuple else h
    hs = [h]
    for t in range(length):
        trace = None if traces is None else {}
        state = cell.recurrence(gi_all[:, :, t], state, weight_hh, p["bhh"], trace=trace,
                                **options)
        hs.append(cell.output(state))
        if traces is not None:
            traces.append(trace)
    logits = torch.baddbmm(p["fcb"].unsqueeze(1), hs[-1], p["fcwT"])
    return logits[..., :shape.classes], hs


class _GroupState:
    """Stacked parameters, optimiser state and per-member settings of one lock-step group."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.shape = members[0].shape
        self.params = torch.stack([m.params for m in members]).contiguous()
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.grad = torch.zeros_like(self.params)
        self.tokens = torch.stack([torch.from_numpy(m.inputs).long() for m in members])
        self.labels = torch.stack([torch.from_numpy(m.targets).long() for m in members])
        cfgs = [m.config for m in members]
        column = lambda values: torch.tensor(values, dtype=torch.float32).unsqueeze(1)  # noqa: E731
        self.lr = column([c.lr for c in cfgs])
        self.weight_decay = column([c.weight_decay for c in cfgs])
        self.momentum = column([c.momentum for c in cfgs])
        self.clip_value = column([c.clip_value or INF for c in cfgs])
        self.clip_per_param = column([c.clip_per_param or INF for c in cfgs])
        self.clip_norm = column([c.clip_norm or INF for c in cfgs])
        self.adam = cfgs[0].optimizer == "adam"
        self.sum_reduction = cfgs[0].reduction == "sum"
        self.steps_taken = 0
        self.arange = torch.arange(len(members)).unsqueeze(1)

    def step(self, s: int) -> Tensor:
        """Optimiser step ``s`` (0-based) of every member; returns the losses ``[M]``."""
        sched = self.members[0].schedule
        lo, hi = int(sched.offsets[s]), int(sched.offsets[s + 1])
        rows = torch.stack([torch.from_numpy(m.schedule.rows[lo:hi]).long()
                            for m in self.members])
        x = self.tokens[self.arange, rows]
        y = self.labels[self.arange, rows]
        p = _unpack(self.shape, self.params)
        traces: list[dict[str, Tensor]] = []
        logits, hs = _forward(self.shape, p, x, traces)
        batch = x.shape[1]
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(2, y.unsqueeze(2)).squeeze(2)
        losses = -picked.sum(1) if self.sum_reduction else -picked.mean(1)
        dlogits = log_probs.exp()
        dlogits.scatter_add_(2, y.unsqueeze(2), -torch.ones_like(picked).unsqueeze(2))
        if not self.sum_reduction:
            dlogits /= batch
        dlogits = F.pad(dlogits, (0, self.shape.classes_padded - self.shape.classes))
        self._backward(p, x, hs, traces, dlogits)
        self._clip()
        self._update()
        return losses

    def _backward(self, p: dict[str, Tensor], x: Tensor, hs: list[Tensor],
                  traces: list[dict[str, Tensor]], dl: Tensor) -> None:
        """Gradients of the members' losses into ``self.grad``, from the forward's traces."""
        shape = self.shape
        m, b, length = x.shape
        cell, h_size = shape.cell, shape.hidden_padded
        g = _unpack(shape, self.grad)
        torch.bmm(hs[-1].transpose(1, 2), dl, out=g["fcwT"])
        g["fcb"].copy_(dl.sum(1))
        dh = torch.bmm(dl, p["fcwT"].transpose(1, 2))
        dc = torch.zeros_like(dh)
        dgis, dghs = [None] * length, [None] * length
        whh = p["whhT"].transpose(1, 2)
        for t in range(length - 1, -1, -1):
            tr = traces[t]
            if cell == "lstm":
                i_g, f_g, g_g, o_g, tc = tr["i"], tr["f"], tr["g"], tr["o"], tr["tanh_c"]
                c_prev = traces[t - 1]["c"] if t else torch.zeros_like(tc)
                dct = dc + dh * o_g * (1 - tc * tc)
                dgh = torch.cat([dct * g_g * i_g * (1 - i_g), dct * c_prev * f_g * (1 - f_g),
                                 dct * i_g * (1 - g_g * g_g), dh * tc * o_g * (1 - o_g)], dim=-1)
                dc = dct * f_g
                dgi, direct = dgh, None
            elif cell == "gru":
                r, z, n = tr["r"], tr["z"], tr["n"]
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (hs[t] - n) * z * (1 - z)
                dr = dn * tr["h_n"] * r * (1 - r)
                dgi = torch.cat([dr, dz, dn], dim=-1)
                dgh = torch.cat([dr, dz, dn * r], dim=-1)
                direct = dh * z
            else:
                act = tr["act"]
                dgh = dh * (act > 0) if shape.relu else dh * (1 - act * act)
                dgi = dgh
                direct = dh if cell == "residual-srn" else None
            dgis[t], dghs[t] = dgi, dgh
            if t:
                dh = torch.bmm(dgh, whh)
                if direct is not None:
                    dh = dh + direct
        dgi_all = torch.stack(dgis, dim=2)  # [M, B, L, GH]
        dgh_all = torch.stack(dghs, dim=1)  # [M, L, B, GH]
        gh_size = dgh_all.shape[-1]
        if length > 1:
            h_prev = torch.stack(hs[1:length], dim=1).reshape(m, -1, h_size)
            torch.bmm(h_prev.transpose(1, 2), dgh_all[:, 1:].reshape(m, -1, gh_size),
                      out=g["whhT"])
        else:
            g["whhT"].zero_()
        g["bhh"].copy_(dgh_all.sum((1, 2)))
        acc = torch.zeros(m * shape.vocab, gh_size)
        index = x + (torch.arange(m) * shape.vocab).view(m, 1, 1)
        acc.index_add_(0, index.reshape(-1), dgi_all.reshape(-1, gh_size))
        acc = acc.view(m, shape.vocab, gh_size)
        g["bih"].copy_(acc.sum(1))
        torch.bmm(p["emb"].transpose(1, 2), acc, out=g["wihT"])
        torch.bmm(acc, p["wihT"].transpose(1, 2), out=g["emb"])

    def _clip(self) -> None:
        """Element clamp, each parameter's norm, the global norm (the trainer's order)."""
        g = self.grad
        torch.maximum(torch.minimum(g, self.clip_value), -self.clip_value, out=g)
        norms = []
        for part in torch.split(g, self.shape.kernel_sizes(), dim=1):
            norm = part.norm(dim=1, keepdim=True)
            part.mul_(_clip_coef(self.clip_per_param, norm))
            norms.append(part.norm(dim=1, keepdim=True))
        total = torch.cat(norms, dim=1).norm(dim=1, keepdim=True)
        g.mul_(_clip_coef(self.clip_norm, total))

    def _update(self) -> None:
        self.steps_taken += 1
        g, p = self.grad, self.params
        g = g + self.weight_decay * p
        if self.adam:
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            self.exp_avg.lerp_(g, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** self.steps_taken)
            denom = (self.exp_avg_sq.sqrt() / (1 - beta2 ** self.steps_taken) ** 0.5).add_(eps)
            p.sub_(step_size * (self.exp_avg / denom))
        else:
            if self.steps_taken == 1:
                self.exp_avg.copy_(g)
            else:
                self.exp_avg.mul_(self.momentum).add_(g)
            direction = torch.where(self.momentum != 0, self.exp_avg, g)
            p.sub_(self.lr * direction)
        for member in self.members:
            member.step[0] = self.steps_taken


def _clip_coef(limit: Tensor, norm: Tensor) -> Tensor:
    """Each member's scale for its gradient: 1 where clipping is off (``limit`` inf; not
    inf / inf = nan for an infinite norm, which the trainer, not clipping, never makes)."""
    return torch.where(torch.isinf(limit), 1.0, (limit / (norm + 1e-6)).clamp(max=1.0))
