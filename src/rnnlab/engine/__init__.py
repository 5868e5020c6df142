"""The lock-step population trainer: many small recurrent models trained at once.

A memory experiment trains dozens of tiny models (hidden 32, batch 8). Trained one
by one in PyTorch, nearly all their time is per-operation overhead. The engine
trains a whole list of :class:`Job` s, each exactly as
:class:`rnnlab.train.Trainer` would train it alone (same initialisation, data
order, optimiser, clipping, evaluation, best-checkpoint selection, files and
result), with the forward and backward pass through time written out by hand:

- ``kernel`` (default): a C kernel, built at first use with the system's C
  compiler and cached, runs hundreds of optimiser steps per call; jobs run side
  by side in threads. It trains token or feature inputs with a classify, tag
  (per-step, -100 unscored) or regress-last head: every memory-suite task.
- ``torch``: the same hand-written BPTT in PyTorch, jobs of one shape in
  lock-step with batched matrix products (token classification only); used where
  no C compiler is present (said once on stderr) or where the kernel is measured
  slower.

:func:`describe` says which backend runs here and why (kernel variant, compiler,
measured speeds); ``RNNLAB_ENGINE_BACKEND=kernel`` requires the kernel (an error
instead of a fallback), ``=torch`` chooses the PyTorch backend.

Scope: token inputs, one unidirectional layer of ``srn``, ``residual-srn``,
``lstm`` or ``gru``, a classification head on the last state, cross-entropy and
accuracy; anything else raises :class:`~rnnlab.errors.RnnlabError` naming the
ordinary trainer as the way to train it.

Example::

    from rnnlab.engine import Job, train_population
    results = train_population([Job(train, dev, model_config, train_config, test=test,
                                    out_dir=f"runs/{i}") for i, ... in ...])
"""

from rnnlab.engine.backends import BACKENDS, describe, get_backend
from rnnlab.engine.jobs import Job
from rnnlab.engine.population import iter_population, score, train_population

__all__ = ["BACKENDS", "Job", "describe", "get_backend", "iter_population", "score",
           "train_population"]
