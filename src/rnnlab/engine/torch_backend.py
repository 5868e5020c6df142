"""The pure-PyTorch backend: members of one shape in lock-step, BPTT written by hand.

Every weight carries a leading model dimension ``M``; each time step is one
``torch.bmm`` for all members, the backward pass through time is written out
(no autograd graph: its per-operation bookkeeping is most of the cost for models
this small), and Adam or SGD runs once over the stacked flat parameters
``[M, P]`` with per-member learning rate, momentum, weight decay and clipping.
It computes what the C kernel computes, in the same layout, and is used where
the kernel cannot be built (no C compiler) or when asked for.

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

from rnnlab.engine.backends import Group

if TYPE_CHECKING:
    from rnnlab.engine.layout import Shape
    from rnnlab.engine.population import Member

INF = float("inf")


class TorchBackend:
    """Lock-step groups of members, batched matrix products, hand-written BPTT."""

    name = "torch"
    parallel = False

    def group(self, members: list[Member]) -> list[Group]:
        by_key: dict[tuple, list[Member]] = {}
        for m in members:
            cfg, s = m.config, m.shape
            key = (s, cfg.optimizer, cfg.reduction, cfg.batch_size, m.schedule.n_train,
                   m.schedule.total_steps, tuple(m.schedule.evals))
            by_key.setdefault(key, []).append(m)
        groups = []
        for group_members in by_key.values():
            state = _GroupState(group_members)
            for i, m in enumerate(group_members):
                # members see rows of the stacked tensors, so snapshots and outputs work unchanged
                m.params, m.opt_a, m.opt_b = state.params[i], state.opt_a[i], state.opt_b[i]
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
            logits = _forward(state.shape, params, x, store=False)[0]
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


def _forward(shape: Shape, p: dict[str, Tensor], x: Tensor, store: bool):
    """Logits ``[M, B, C]`` for tokens ``x [M, B, L]`` (padded classes dropped); with
    ``store``, what backward needs."""
    m, b, length = x.shape
    h_size = shape.hidden_padded
    cell = shape.cell
    table = torch.bmm(p["emb"], p["wihT"]) + p["bih"].unsqueeze(1)
    if cell != "gru":
        table = table + p["bhh"].unsqueeze(1)
    index = x + (torch.arange(m) * shape.vocab).view(m, 1, 1)
    gi_all = table.reshape(m * shape.vocab, -1)[index]  # [M, B, L, GH]
    h = x.new_zeros((m, b, h_size), dtype=torch.float32)
    c = torch.zeros_like(h)
    saved = {"h": [h], "act": [], "c": [c], "tc": [], "ghn": [], "index": index}
    for t in range(length):
        gi = gi_all[:, :, t]
        if cell == "gru":
            gh = torch.baddbmm(p["bhh"].unsqueeze(1), h, p["whhT"]) if t else \
                p["bhh"].unsqueeze(1).expand(m, b, -1)
            r = torch.sigmoid(gi[..., :h_size] + gh[..., :h_size])
            z = torch.sigmoid(gi[..., h_size:2 * h_size] + gh[..., h_size:2 * h_size])
            hn = gh[..., 2 * h_size:]
            n = torch.tanh(gi[..., 2 * h_size:] + r * hn)
            h = n + z * (h - n)
            if store:
                saved["act"].append(torch.cat([r, z, n], dim=-1))
                saved["ghn"].append(hn)
        else:
            pre = torch.baddbmm(gi, h, p["whhT"]) if t else gi
            if cell == "lstm":
                i_g, f_g, o_g = (torch.sigmoid(pre[..., k * h_size:(k + 1) * h_size])
                                 for k in (0, 1, 3))
                g_g = torch.tanh(pre[..., 2 * h_size:3 * h_size])
                c = f_g * c + i_g * g_g
                tc = torch.tanh(c)
                h = o_g * tc
                if store:
                    saved["act"].append(torch.cat([i_g, f_g, g_g, o_g], dim=-1))
                    saved["c"].append(c)
                    saved["tc"].append(tc)
            else:
                a = torch.relu(pre) if shape.relu else torch.tanh(pre)
                h = h + a if cell == "residual-srn" else a
                if store:
                    saved["act"].append(a)
        if store:
            saved["h"].append(h)
    logits = torch.baddbmm(p["fcb"].unsqueeze(1), h, p["fcwT"])
    return logits[..., :shape.classes], saved


class _GroupState:
    """Stacked parameters, optimiser state and per-member settings of one lock-step group."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.shape = members[0].shape
        self.params = torch.stack([m.params for m in members]).contiguous()
        self.opt_a = torch.zeros_like(self.params)
        self.opt_b = torch.zeros_like(self.params)
        self.grad = torch.zeros_like(self.params)
        self.tokens = torch.stack([torch.from_numpy(m.tokens).long() for m in members])
        self.labels = torch.stack([torch.from_numpy(m.labels).long() for m in members])
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
        logits, saved = _forward(self.shape, p, x, store=True)
        batch = x.shape[1]
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(2, y.unsqueeze(2)).squeeze(2)
        losses = -picked.sum(1) if self.sum_reduction else -picked.mean(1)
        dlogits = log_probs.exp()
        dlogits.scatter_add_(2, y.unsqueeze(2), -torch.ones_like(picked).unsqueeze(2))
        if not self.sum_reduction:
            dlogits /= batch
        dlogits = F.pad(dlogits, (0, self.shape.classes_padded - self.shape.classes))
        self._backward(p, x, saved, dlogits)
        self._clip()
        self._update()
        return losses

    def _backward(self, p: dict[str, Tensor], x: Tensor, saved: dict, dl: Tensor) -> None:
        shape = self.shape
        hs, acts = saved["h"], saved["act"]
        m, b, length = x.shape
        h_size, cell = shape.hidden_padded, shape.cell
        g = _unpack(shape, self.grad)
        torch.bmm(hs[-1].transpose(1, 2), dl, out=g["fcwT"])
        g["fcb"].copy_(dl.sum(1))
        dh = torch.bmm(dl, p["fcwT"].transpose(1, 2))
        dc = torch.zeros_like(dh)
        dgis, dghs = [None] * length, [None] * length
        whh = p["whhT"].transpose(1, 2)
        for t in range(length - 1, -1, -1):
            act = acts[t]
            if cell == "lstm":
                i_g, f_g, g_g, o_g = act.split(h_size, dim=-1)
                tc = saved["tc"][t]
                dct = dc + dh * o_g * (1 - tc * tc)
                dgh = torch.cat([dct * g_g * i_g * (1 - i_g), dct * saved["c"][t] * f_g * (1 - f_g),
                                 dct * i_g * (1 - g_g * g_g), dh * tc * o_g * (1 - o_g)], dim=-1)
                dc = dct * f_g
                dgi, direct = dgh, None
            elif cell == "gru":
                r, z, n = act.split(h_size, dim=-1)
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (hs[t] - n) * z * (1 - z)
                dr = dn * saved["ghn"][t] * r * (1 - r)
                dgi = torch.cat([dr, dz, dn], dim=-1)
                dgh = torch.cat([dr, dz, dn * r], dim=-1)
                direct = dh * z
            else:
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
        acc.index_add_(0, saved["index"].reshape(-1), dgi_all.reshape(-1, gh_size))
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
            self.opt_a.lerp_(g, 1 - beta1)
            self.opt_b.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** self.steps_taken)
            denom = (self.opt_b.sqrt() / (1 - beta2 ** self.steps_taken) ** 0.5).add_(eps)
            p.sub_(step_size * (self.opt_a / denom))
        else:
            if self.steps_taken == 1:
                self.opt_a.copy_(g)
            else:
                self.opt_a.mul_(self.momentum).add_(g)
            direction = torch.where(self.momentum != 0, self.opt_a, g)
            p.sub_(self.lr * direction)
        for member in self.members:
            member.step[0] = self.steps_taken


def _clip_coef(limit: Tensor, norm: Tensor) -> Tensor:
    """Each member's scale for its gradient: 1 where clipping is off (``limit`` inf; not
    inf / inf = nan for an infinite norm, which the trainer, not clipping, never makes)."""
    return torch.where(torch.isinf(limit), 1.0, (limit / (norm + 1e-6)).clamp(max=1.0))
