"""The C kernel on every head and input of the memory suite, against the ordinary trainer.

Per-step tagging with unscored steps (copy: the same steps in every sequence;
associative recall: different steps in each), and regression from the last state on
real-valued features (adding), for every built-in cell: the engine's curves, test
scores and checkpoints must equal the trainer's early in training, as for DigitSum in
tests/test_engine.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.engine import Job, train_population
from rnnlab.engine.jobs import check_supported
from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import model_config_for
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, load_checkpoint
from test_engine import (
    assert_same_checkpoint,
    assert_same_run,
    native_available,
    train_alone,
)

CELLS = ["srn", "lstm", "gru", "residual-srn"]
needs_kernel = pytest.mark.skipif(not native_available(), reason="no C compiler for the kernel")
# task name, its options (small splits: a few hundred steps)
TASKS = {
    "copy": {"length": 6, "n_symbols": 3, "n_train": 120, "n_dev": 40, "n_test": 40},
    "associative-recall": {"length": 12, "n_pairs": 3, "n_train": 120, "n_dev": 40,
                           "n_test": 40},
    "adding": {"length": 9, "n_train": 120, "n_dev": 40, "n_test": 40},
}


def jobs_for(task_name: str, cell: str, out: Path | None, **config) -> list[Job]:
    jobs = []
    task = get_task(task_name, **TASKS[task_name])
    for i, (seed, lr) in enumerate([(0, 3e-3), (1, 1e-2)]):
        splits = task.splits(seed)
        model_config = model_config_for(task.spec, cell=cell, init="torch", hidden_size=20,
                                        embedding_dim=12)
        base = dict(epochs=4, batch_size=16, lr=lr, eval_every=10, seed=seed, progress="off",
                    clip_norm=1.0 if i else None)
        jobs.append(Job(splits["train"], splits["dev"], model_config,
                        TrainConfig(**{**base, **config}), test=splits["test"],
                        out_dir=None if out is None else out / f"job{i}", name=f"job{i}"))
    return jobs


@needs_kernel
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("task_name", list(TASKS))
def test_kernel_matches_trainer_on_every_suite_head(tmp_path, task_name, cell):
    jobs = jobs_for(task_name, cell, tmp_path / "engine")
    results = train_population(jobs, backend="kernel")
    for i, job in enumerate(jobs):
        alone, _ = train_alone(job, tmp_path / "alone" / f"job{i}")
        assert_same_run(results[i], alone)
        ours, theirs = Path(job.out_dir), tmp_path / "alone" / f"job{i}"
        our_rows, their_rows = read_csv(ours / "metrics.csv"), read_csv(theirs / "metrics.csv")
        assert list(our_rows[0]) == list(their_rows[0])
        for name in ("best.pt", "last.pt"):
            assert_same_checkpoint(load_checkpoint(ours / name), load_checkpoint(theirs / name))
    # the runs learned something: the loss moved (a kernel that ignored the head would not)
    assert results[1].history[-1]["train_loss"] != results[1].history[0]["train_loss"]


@needs_kernel
@pytest.mark.parametrize("task_name", ["copy", "adding"])
def test_sum_reduction_sgd_and_weight_decay_match_trainer(task_name):
    config = dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3, reduction="sum",
                  clip_value=0.5, lr=1e-3)
    jobs = jobs_for(task_name, "gru", None, **config)
    for job, ours in zip(jobs, train_population(jobs, backend="kernel"), strict=True):
        theirs, _ = train_alone(job, None)
        assert_same_run(ours, theirs)


@needs_kernel
def test_unscored_steps_do_not_reach_the_loss():
    """Changing the input at a step after the last scored step of every sequence changes
    nothing for a tag head; changing a label to -100 changes the loss."""
    (job, _) = jobs_for("copy", "lstm", None, epochs=1)
    before = train_population([job], backend="kernel")[0]
    targets = job.train.targets.clone()
    targets[:, -1] = -100  # the last recall step is no longer scored
    job.train = type(job.train)(job.train.inputs, targets)
    after = train_population([job], backend="kernel")[0]
    assert before.history[0]["train_loss"] != after.history[0]["train_loss"]
    alone, _ = train_alone(job, None)
    assert_same_run(after, alone)


def test_wrong_targets_for_the_head_are_refused():
    task = get_task("copy", **TASKS["copy"])
    splits = task.splits(0)
    config = model_config_for(task.spec, cell="lstm")
    per_sequence = type(splits["train"])(splits["train"].inputs, splits["train"].targets[:, -1])
    with pytest.raises(RnnlabError, match=r"not \(N, L\) class labels"):
        check_supported(Job(per_sequence, splits["dev"], config, TrainConfig()), 0)
    wrong = splits["train"].targets.clone()
    wrong[0, -1] = 99
    bad = type(splits["train"])(splits["train"].inputs, wrong)
    with pytest.raises(RnnlabError, match="class labels must lie in"):
        check_supported(Job(bad, splits["dev"], config, TrainConfig()), 0)
    adding = get_task("adding", **TASKS["adding"])
    a_splits = adding.splits(0)
    a_config = model_config_for(adding.spec, cell="gru")
    ints = type(a_splits["train"])(a_splits["train"].inputs,
                                   a_splits["train"].targets.round().long())
    with pytest.raises(RnnlabError, match="real values"):
        check_supported(Job(ints, a_splits["dev"], a_config, TrainConfig()), 0)


def test_torch_backend_refuses_what_only_the_kernel_trains():
    jobs = jobs_for("adding", "srn", None, epochs=1)
    with pytest.raises(RnnlabError, match="torch backend trains token classification only"):
        train_population(jobs, backend="torch")


def test_feature_layout_round_trip():
    from rnnlab.engine.layout import Shape, flatten, unflatten

    shape = Shape("lstm", vocab=0, embed=3, hidden=20, classes=1, length=4,
                  head="regress-last", features=3)
    tensors = {name: torch.randn(size) for name, size in shape.torch_shapes().items()
               if name in shape.names}
    flat = flatten(shape, tensors)
    assert flat.numel() == shape.num_params
    back = unflatten(shape, flat)
    assert list(back) == list(shape.names) and "embedding" not in back
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor), name
    assert int((flat != 0).sum()) == sum(int(np.prod(t.shape)) for t in tensors.values())
