"""DigitSum training compiled whole by JAX (``jit`` + ``lax.scan``): the bar to beat.

One model at a time, as the issue measured it: the embedding -> cell -> linear
model, cross-entropy, Adam written out, and every optimiser step of the run inside
one ``lax.scan``, so after compiling, the whole run is one XLA call. Dev
evaluation and checkpoints are left out, which only flatters JAX. Optional: the
benchmark skips it when ``jax`` is not installed (``pip install -e .[bench]``).
"""

from __future__ import annotations

import time

import numpy as np


def available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def train(cell: str, tokens: np.ndarray, labels: np.ndarray, rows: np.ndarray,
          hidden: int = 32, embed: int = 32, classes: int = 19, lr: float = 1e-3,
          seed: int = 0) -> tuple[float, float]:
    """Train on the batches ``tokens[rows[s]]`` (``rows`` is ``[steps, B]``).

    Returns ``(compile seconds, run seconds)``; the run is timed after compiling.
    """
    import jax
    import jax.numpy as jnp

    gates = {"srn": 1, "lstm": 4}[cell]
    key = jax.random.PRNGKey(seed)
    k1, k2 = jax.random.split(key)
    bound = (6.0 / (10 + embed)) ** 0.5
    params = {
        "emb": jax.random.uniform(k1, (10, embed), minval=-bound, maxval=bound),
        # the seed's zero-initialised cell
        "w_ih": jnp.zeros((embed, gates * hidden)), "w_hh": jnp.zeros((hidden, gates * hidden)),
        "b": jnp.zeros((gates * hidden,)),
        "w_out": jax.random.uniform(k2, (hidden, classes), minval=-0.17, maxval=0.17),
        "b_out": jnp.zeros((classes,)),
    }

    def loss_fn(p, x, y):
        xs = p["emb"][x].transpose(1, 0, 2)  # [L, B, E]
        gi = xs @ p["w_ih"] + p["b"]

        def srn_step(h, g):
            h = jnp.tanh(g + h @ p["w_hh"])
            return h, None

        def lstm_step(carry, g):
            h, c = carry
            z = g + h @ p["w_hh"]
            i, f, gg, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        h0 = jnp.zeros((x.shape[0], hidden))
        if cell == "srn":
            h, _ = jax.lax.scan(srn_step, h0, gi)
        else:
            (h, _), _ = jax.lax.scan(lstm_step, (h0, h0), gi)
        logits = h @ p["w_out"] + p["b_out"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    grad_fn = jax.value_and_grad(loss_fn)
    x_all, y_all = jnp.asarray(tokens), jnp.asarray(labels)

    def step(carry, batch_rows):
        p, m, v, t = carry
        loss, g = grad_fn(p, x_all[batch_rows], y_all[batch_rows])
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        p = jax.tree_util.tree_map(
            lambda a, mm, vv: a - lr * (mm / c1) / (jnp.sqrt(vv / c2) + 1e-8), p, m, v)
        return (p, m, v, t), loss

    @jax.jit
    def run(p, batches):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
        (p, _, _, _), losses = jax.lax.scan(step, (p, zeros, zeros, 0.0), batches)
        return p, losses

    batches = jnp.asarray(rows)
    began = time.perf_counter()
    compiled = run.lower(params, batches).compile()
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    out = compiled(params, batches)
    jax.block_until_ready(out)
    return compile_seconds, time.perf_counter() - began
