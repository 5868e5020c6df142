"""The generic lock-step path equals the one-by-one Trainer early in training."""

import pytest
import torch
from torch import nn

from rnnlab.engine.generic import Copy, clip_per_copy, fit_lockstep, fit_many
from rnnlab.engine.twins import vmappable
from rnnlab.errors import RnnlabError
from rnnlab.layers import Recurrent
from rnnlab.seeding import seed_everything
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer

SEEDS = (0, 1, 2)


class UserLSTM(nn.Module):
    """An nn.LSTM classifier written the way a user would."""

    def __init__(self, vocab_size=10, num_outputs=19, hidden=16):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x):
        outputs, (h, c) = self.lstm(self.embed(x))
        return self.out(h[-1])


class UserMLP(nn.Module):
    """Not recurrent at all: the whole sequence flattened into an MLP."""

    def __init__(self, vocab_size, num_outputs, length, per_step=False):
        super().__init__()
        self.per_step, self.length, self.num_outputs = per_step, length, num_outputs
        self.embed = nn.Embedding(vocab_size, 4)
        width = num_outputs * (length if per_step else 1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4 * length, 32), nn.ReLU(),
                                 nn.Linear(32, width))

    def forward(self, x):
        out = self.net(self.embed(x))
        return out.view(x.shape[0], self.length, self.num_outputs) if self.per_step else out


class CellClassifier(nn.Module):
    """A built-in rnnlab cell in the Recurrent layer (python backend), last state -> head."""

    def __init__(self, cell, vocab_size=10, num_outputs=19, hidden=12, head="classify",
                 input_size=None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 6) if input_size is None else None
        self.rnn = Recurrent(cell, 6 if input_size is None else input_size, hidden)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x):
        outputs, _ = self.rnn(x if self.embed is None else self.embed(x))
        return self.out(outputs[:, -1])


def one_by_one(build, config, splits_by_seed):
    results, models = [], []
    for seed in SEEDS:
        seed_everything(seed)
        model = build()
        splits = splits_by_seed(seed)
        results.append(Trainer(config.replace(seed=seed)).fit(
            model, splits["train"], splits["dev"], splits["test"]))
        models.append(model)
    return results, models


def assert_same(config, build, splits_by_seed, atol=1e-5):
    loop_results, loop_models = one_by_one(build, config, splits_by_seed)
    copies = [Copy(seed, *(splits_by_seed(seed)[k] for k in ("train", "dev", "test")))
              for seed in SEEDS]
    group = fit_lockstep(build, config, copies, path="vmap")
    assert group.path == "vmap"
    for ref, got, ref_model, got_model in zip(loop_results, group.results, loop_models,
                                              group.models, strict=True):
        assert got.steps == ref.steps and got.epochs == ref.epochs
        assert got.best_step == ref.best_step
        assert [h["step"] for h in got.history] == [h["step"] for h in ref.history]
        metric = f"dev_{ref.metric}"
        for a, b in zip(got.history, ref.history, strict=True):
            assert a[metric] == pytest.approx(b[metric], abs=atol)
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=atol)
        assert got.test[ref.metric] == pytest.approx(ref.test[ref.metric], abs=atol)
        reference = dict(ref_model.named_parameters())
        for name, value in got_model.named_parameters():
            torch.testing.assert_close(value, reference[name], atol=atol, rtol=1e-4)
    return group


def digitsum(length):
    task = get_task("digitsum", length=length)
    return lambda seed: task.splits(seed)


def test_user_lstm_classifier_equals_the_trainer():
    config = TrainConfig(max_steps=30, eval_every=10, batch_size=32, lr=5e-3, progress="off",
                         restore_best=False, clip_norm=0.5)
    assert_same(config, UserLSTM, digitsum(7))


def test_non_recurrent_model_equals_the_trainer_on_a_tagging_task():
    task = get_task("selective-copy", length=6, n_symbols=2, n_train=200, n_dev=50, n_test=50)
    config = TrainConfig(max_steps=40, eval_every=8, batch_size=16, lr=3e-3, progress="off")
    group = assert_same(config, lambda: UserMLP(task.vocab_size, task.num_outputs,
                                                task.total_length, per_step=True),
                        lambda seed: task.splits(seed))
    assert group.results[0].metric == "accuracy"


@pytest.mark.parametrize("cell", ["lstm", "gru", "srn"])
def test_built_in_cell_model_equals_the_trainer(cell):
    config = TrainConfig(max_steps=25, eval_every=10, batch_size=32, lr=1e-2, progress="off",
                         optimizer="sgd", momentum=0.9, clip_value=0.5, weight_decay=1e-3)
    assert_same(config, lambda: CellClassifier(cell), digitsum(6))


def test_regression_last_state_and_early_stopping_equal_the_trainer():
    task = get_task("adding", length=8, n_train=96, n_dev=40, n_test=40)
    config = TrainConfig(epochs=12, eval_every=3, batch_size=16, lr=2e-2, progress="off",
                         early_stop_patience=2, clip_per_param=0.3)
    group = assert_same(config, lambda: CellClassifier("gru", num_outputs=1, input_size=2),
                        lambda seed: task.splits(seed))
    assert any(r.stopped_early for r in group.results)  # the schedule was really exercised


def test_twin_rnns_compute_what_torch_computes():
    torch.manual_seed(0)
    for native in (nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True),
                   nn.GRU(3, 5, batch_first=False), nn.RNN(3, 5, nonlinearity="relu")):
        twin = vmappable(nn.Sequential(native))
        x = torch.randn(4, 7, 3)
        want, got = native(x), twin[0](x)
        torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=1e-5)
        for a, b in zip(got[1] if isinstance(got[1], tuple) else (got[1],),
                        want[1] if isinstance(want[1], tuple) else (want[1],), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_clip_per_copy_equals_torch_clipping_copy_by_copy():
    torch.manual_seed(1)
    grads = [torch.randn(3, 4, 5), torch.randn(3, 6)]
    config = TrainConfig(clip_norm=1.5, clip_value=1.0, clip_per_param=2.0)
    expected = []
    for m in range(3):
        params = [nn.Parameter(torch.zeros_like(g[m])) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g[m].clone()
        from rnnlab.train.trainer import clip_gradients
        clip_gradients(params, config)
        expected.append([p.grad for p in params])
    clip_per_copy(grads, config)
    for m in range(3):
        for got, want in zip(grads, expected[m], strict=True):
            torch.testing.assert_close(got[m], want)


def test_auto_falls_back_to_the_loop_when_vmap_cannot_run_the_model():
    class Picky(UserMLP):
        def forward(self, x):
            if int(x.max()) > 100:  # data-dependent Python control flow: vmap refuses it
                raise ValueError("impossible")
            return super().forward(x)

    config = TrainConfig(max_steps=4, batch_size=32, progress="off")
    splits = digitsum(5)
    copies = [Copy(s, splits(s)["train"], splits(s)["dev"]) for s in (0, 1)]
    group = fit_lockstep(lambda: Picky(10, 19, 5), config, copies)
    assert group.path == "loop" and "vmap impossible" in group.note
    with pytest.raises(RnnlabError, match="cannot be trained on the vmap path"):
        fit_lockstep(lambda: Picky(10, 19, 5), config, copies, path="vmap")


def test_fit_many_groups_by_shape_and_keeps_job_order():
    config = TrainConfig(max_steps=3, batch_size=32, progress="off")
    jobs = []
    for length in (5, 6):
        splits = digitsum(length)
        for seed in (0, 1):
            jobs.append((("mlp", length), lambda n=length: UserMLP(10, 19, n), config,
                         Copy(seed, splits(seed)["train"], splits(seed)["dev"])))
    results, models, notes = fit_many(jobs, path="vmap")
    assert len(notes) == 2 and all("x2: vmap" in note for note in notes)
    assert [m.length for m in models] == [5, 5, 6, 6]
    assert all(r.steps == 3 for r in results)
    grid = [(key, build, config.replace(lr=lr), copy) for key, build, _, copy in jobs
            for lr in (1e-3, 1e-2)]
    _, _, notes = fit_many(grid, path="vmap")  # a learning-rate grid shares the groups
    assert len(notes) == 2 and all("x4: vmap" in note for note in notes)
    mixed = [jobs[0][3], jobs[2][3]]  # lengths 5 and 6 in one group: refused
    with pytest.raises(RnnlabError, match="same shapes"):
        fit_lockstep(lambda: UserMLP(10, 19, 5), config, mixed)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_learning_rate_grid_in_one_group_equals_the_trainer(optimizer):
    splits = digitsum(6)
    grid = [(0, 1e-3, 0.0), (1, 5e-3, 0.0), (0, 2e-2, 1e-2)]
    config = TrainConfig(max_steps=20, eval_every=10, optimizer=optimizer, momentum=0.9,
                         progress="off", restore_best=False, clip_norm=1.0)
    build = lambda: CellClassifier("gru")  # noqa: E731
    copies = [Copy(seed, splits(seed)["train"], splits(seed)["dev"], lr=lr, weight_decay=wd)
              for seed, lr, wd in grid]
    group = fit_lockstep(build, config, copies, path="vmap")
    for (seed, lr, wd), got in zip(grid, group.models, strict=True):
        seed_everything(seed)
        ref = build()
        Trainer(config.replace(seed=seed, lr=lr, weight_decay=wd)).fit(
            ref, splits(seed)["train"], splits(seed)["dev"])
        for (_, a), (_, b) in zip(got.named_parameters(), ref.named_parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layer, reason", [
    (lambda: nn.BatchNorm1d(19), "changes its buffers while training"),
    (lambda: nn.Dropout(0.5), "randomness"),
])
def test_models_vmap_cannot_copy_exactly_take_the_loop(layer, reason):
    config = TrainConfig(max_steps=3, batch_size=32, progress="off")
    splits = digitsum(5)
    copies = [Copy(s, splits(s)["train"], splits(s)["dev"]) for s in (0, 1)]
    group = fit_lockstep(lambda: nn.Sequential(UserMLP(10, 19, 5), layer()), config, copies)
    assert group.path == "loop" and reason in group.note


class MaskedMean(nn.Module):
    """Takes lengths: the mean of the valid steps' embeddings, per step or pooled."""

    def __init__(self, per_step=False):
        super().__init__()
        self.per_step = per_step
        self.embed = nn.Embedding(10, 8)
        self.out = nn.Linear(8, 19)

    def forward(self, x, lengths=None):
        e = self.embed(x)
        if self.per_step:
            return self.out(torch.cumsum(e, dim=1))
        valid = (torch.arange(x.shape[1]) < lengths.unsqueeze(1)).unsqueeze(-1)
        return self.out((e * valid).sum(1) / lengths.unsqueeze(1))


@pytest.mark.parametrize("per_step", [False, True])
def test_data_with_lengths_equal_the_trainer(per_step):
    from rnnlab.tasks import SplitData

    def splits(seed):
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, n in (("train", 64), ("dev", 20), ("test", 20)):
            inputs = torch.randint(10, (n, 7), generator=g)
            lengths = torch.randint(2, 8, (n,), generator=g)
            targets = (torch.randint(19, (n, 7), generator=g) if per_step
                       else inputs[:, 0] + inputs[:, 1])
            out[name] = SplitData(inputs, targets, lengths)
        return out

    config = TrainConfig(max_steps=20, eval_every=5, batch_size=16, lr=1e-2, progress="off")
    assert_same(config, lambda: MaskedMean(per_step), splits)
