"""The SRN training loop of the C kernel, written for numba instead: the alternative measured.

The same algorithm as ``rnnlab/engine/kernel.c`` for the SRN (embedding table
projected once per step, plain loops with the inner one over a contiguous row, BPTT
by hand, Adam over each tensor, no temporaries), compiled by numba's ``@njit`` with
``fastmath`` (without it the dot products do not vectorise and it is twice as
slow). Optional: skipped when numba is not installed. It exists to measure numba's
speed and compile time against the C kernel, not to train anything.
"""

from __future__ import annotations

import time

import numpy as np


def available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _build():
    from numba import njit

    @njit(cache=False, fastmath=True)
    def dot(a, b):
        total = np.float32(0.0)
        for j in range(a.shape[0]):
            total += a[j] * b[j]
        return total

    @njit(cache=False, fastmath=True)
    def adam(p, g, m, v, lr, t):
        c1 = 1.0 - 0.9 ** t
        c2 = np.sqrt(1.0 - 0.999 ** t)
        flat_p, flat_g, flat_m, flat_v = p.ravel(), g.ravel(), m.ravel(), v.ravel()
        for i in range(flat_p.size):
            flat_m[i] += 0.1 * (flat_g[i] - flat_m[i])
            flat_v[i] = 0.999 * flat_v[i] + 0.001 * flat_g[i] * flat_g[i]
            flat_p[i] -= (lr / c1) * flat_m[i] / (np.sqrt(flat_v[i]) / c2 + 1e-8)

    @njit(cache=False, fastmath=True)
    def train(emb, wih_t, whh_t, bias, fcw_t, fcb, tokens, labels, rows, lr):
        steps, batch = rows.shape
        length, hidden, embed = tokens.shape[1], whh_t.shape[0], emb.shape[1]
        vocab, classes = emb.shape[0], fcb.shape[0]
        g_emb, g_wih, g_whh = np.zeros_like(emb), np.zeros_like(wih_t), np.zeros_like(whh_t)
        g_b, g_fcw, g_fcb = np.zeros_like(bias), np.zeros_like(fcw_t), np.zeros_like(fcb)
        m2 = [np.zeros_like(emb), np.zeros_like(wih_t), np.zeros_like(whh_t),
              np.zeros_like(fcw_t)]
        v2 = [np.zeros_like(emb), np.zeros_like(wih_t), np.zeros_like(whh_t),
              np.zeros_like(fcw_t)]
        m1 = [np.zeros_like(bias), np.zeros_like(fcb)]
        v1 = [np.zeros_like(bias), np.zeros_like(fcb)]
        hs = np.zeros((length + 1, batch, hidden), np.float32)
        dh = np.zeros((batch, hidden), np.float32)
        dpre = np.zeros(hidden, np.float32)
        table = np.zeros((vocab, hidden), np.float32)
        d = np.zeros(classes, np.float32)
        for s in range(steps):
            for v in range(vocab):
                for j in range(hidden):
                    table[v, j] = bias[j]
                for k in range(embed):
                    for j in range(hidden):
                        table[v, j] += emb[v, k] * wih_t[k, j]
            for t in range(length):
                for b in range(batch):
                    tok = tokens[rows[s, b], t]
                    for j in range(hidden):
                        hs[t + 1, b, j] = table[tok, j]
                    if t > 0:
                        for k in range(hidden):
                            hk = hs[t, b, k]
                            for j in range(hidden):
                                hs[t + 1, b, j] += hk * whh_t[k, j]
                    for j in range(hidden):
                        hs[t + 1, b, j] = np.tanh(hs[t + 1, b, j])
            g_emb[...] = 0.0
            g_wih[...] = 0.0
            g_whh[...] = 0.0
            g_b[...] = 0.0
            g_fcw[...] = 0.0
            g_fcb[...] = 0.0
            for b in range(batch):
                for c in range(classes):
                    d[c] = fcb[c]
                for k in range(hidden):
                    for c in range(classes):
                        d[c] += hs[length, b, k] * fcw_t[k, c]
                top = d.max()
                total = np.float32(0.0)
                for c in range(classes):
                    d[c] = np.exp(d[c] - top)
                    total += d[c]
                for c in range(classes):
                    d[c] = d[c] / (total * batch)
                d[labels[rows[s, b]]] -= np.float32(1.0 / batch)
                for c in range(classes):
                    g_fcb[c] += d[c]
                for k in range(hidden):
                    acc = np.float32(0.0)
                    for c in range(classes):
                        g_fcw[k, c] += hs[length, b, k] * d[c]
                        acc += d[c] * fcw_t[k, c]
                    dh[b, k] = acc
            for t in range(length - 1, -1, -1):
                for b in range(batch):
                    tok = tokens[rows[s, b], t]
                    for j in range(hidden):
                        h = hs[t + 1, b, j]
                        dpre[j] = dh[b, j] * (np.float32(1.0) - h * h)
                        g_b[j] += dpre[j]
                    for k in range(embed):
                        ek = emb[tok, k]
                        acc = np.float32(0.0)
                        for j in range(hidden):
                            g_wih[k, j] += ek * dpre[j]
                            acc += dpre[j] * wih_t[k, j]
                        g_emb[tok, k] += acc
                    for k in range(hidden):
                        hk = hs[t, b, k]
                        acc = np.float32(0.0)
                        for j in range(hidden):
                            g_whh[k, j] += hk * dpre[j]
                            acc += dpre[j] * whh_t[k, j]
                        dh[b, k] = acc
            adam(emb, g_emb, m2[0], v2[0], lr, s + 1)
            adam(wih_t, g_wih, m2[1], v2[1], lr, s + 1)
            adam(whh_t, g_whh, m2[2], v2[2], lr, s + 1)
            adam(fcw_t, g_fcw, m2[3], v2[3], lr, s + 1)
            adam(bias, g_b, m1[0], v1[0], lr, s + 1)
            adam(fcb, g_fcb, m1[1], v1[1], lr, s + 1)
        return steps

    return train


def train(tokens: np.ndarray, labels: np.ndarray, rows: np.ndarray,
          hidden: int = 32, embed: int = 32, classes: int = 19) -> tuple[float, float]:
    """``(compile seconds, run seconds)`` for the SRN on batches ``rows [steps, B]``."""
    fn = _build()
    rng = np.random.default_rng(0)
    params = [rng.uniform(-0.5, 0.5, (10, embed)).astype(np.float32),
              np.zeros((embed, hidden), np.float32), np.zeros((hidden, hidden), np.float32),
              np.zeros(hidden, np.float32),
              rng.uniform(-0.17, 0.17, (hidden, classes)).astype(np.float32),
              np.zeros(classes, np.float32)]
    tok, lab = tokens.astype(np.int64), labels.astype(np.int64)
    began = time.perf_counter()
    fn(*[p.copy() for p in params], tok, lab, rows[:1], np.float32(1e-3))
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    fn(*params, tok, lab, rows, np.float32(1e-3))
    return compile_seconds, time.perf_counter() - began
