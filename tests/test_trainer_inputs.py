"""``Trainer.fit`` with a DataLoader, a device, an LR scheduler, a loss and metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import ModelConfig
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer, load_checkpoint, seeded_model
from training_helpers import CrashAt, params_equal

QUIET = {"progress": "off"}


def digitsum():
    return get_task("digitsum", length=5).splits(0)


def small_model(seed: int = 0):
    return seeded_model(ModelConfig(cell="srn", hidden_size=16, embedding_dim=8, vocab_size=10,
                                    num_outputs=19), seed)


def _data(n: int = 96):
    splits = digitsum()
    return splits["train"].subset(torch.arange(n)), splits["dev"], splits["test"]


def _loader(split, shuffle: bool, generator_seed: int | None = None, batch_size: int = 16):
    generator = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
    return DataLoader(TensorDataset(split.inputs, split.targets), batch_size=batch_size,
                      shuffle=shuffle, generator=generator)


def test_an_unshuffled_loader_trains_exactly_as_the_same_tensors():
    train, dev, test = _data()
    config = TrainConfig(epochs=3, batch_size=16, eval_every=4, shuffle=False, **QUIET)
    by_tensors, by_loader = small_model(seed=2), small_model(seed=2)
    a = Trainer(config).fit(by_tensors, train, dev, test)
    b = Trainer(config).fit(by_loader, _loader(train, shuffle=False),
                            _loader(dev, shuffle=False, batch_size=50), test)
    assert params_equal(by_tensors, by_loader)
    assert a.steps == b.steps == 18 and a.test == b.test and a.history == b.history


@pytest.mark.parametrize("generator_seed", [None, 7])
@pytest.mark.parametrize("crash_step", [9, 14])  # mid-epoch; and past epoch 2's end (12)
def test_a_shuffled_loader_resumes_bit_identically(tmp_path, generator_seed, crash_step):
    train, dev, test = _data()
    config = TrainConfig(epochs=4, batch_size=16, eval_every=4, seed=1, **QUIET)
    reference = small_model(seed=1)
    ref = Trainer(config).fit(reference, _loader(train, True, generator_seed), dev, test)

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, callbacks=[CrashAt(crash_step)]).fit(
            small_model(seed=1), _loader(train, True, generator_seed), dev,
            out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["loader_rng"] is not None
    resumed_model = small_model(seed=99)  # everything comes from last.pt
    resumed = Trainer(config).fit(resumed_model, _loader(train, True, generator_seed), dev,
                                  test, out_dir=tmp_path, resume=True)
    assert resumed.resumed_from_step == crash_step - crash_step % 4
    assert params_equal(resumed_model, reference) and resumed.test == ref.test
    # and the loader really shuffles: a different order gives different parameters
    other = small_model(seed=1)
    Trainer(config).fit(other, _loader(train, True, 123), dev)
    assert not params_equal(other, reference)


def test_a_loader_without_a_length_is_one_sentence():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from ()

    with pytest.raises(RnnlabError, match="must have a length"):
        Trainer(TrainConfig(**QUIET)).fit(small_model(), DataLoader(Stream()), None)


def test_device_cpu_changes_nothing_and_a_cuda_device_trains_there():
    train, dev, test = _data()
    config = TrainConfig(epochs=2, batch_size=16, **QUIET)
    plain, placed = small_model(seed=3), small_model(seed=3)
    a = Trainer(config).fit(plain, train, dev, test)
    b = Trainer(config).fit(placed, train, dev, test, device="cpu")
    assert params_equal(plain, placed) and a.test == b.test
    if torch.cuda.is_available():
        on_gpu = small_model(seed=3)
        trainer = Trainer(config)
        c = trainer.fit(on_gpu, _loader(train, False), dev, test, device="cuda")
        assert next(on_gpu.parameters()).is_cuda
        assert c.test["accuracy"] == pytest.approx(a.test["accuracy"], abs=0.05)
        assert trainer.predict(on_gpu, test.inputs[:3]).device.type == "cpu"


@pytest.mark.parametrize("interval,steps_per_decay", [("epoch", 6), ("step", 1)])
def test_a_scheduler_steps_per_epoch_or_per_step(interval, steps_per_decay):
    train, dev, _ = _data()  # 6 batches per epoch
    config = TrainConfig(epochs=3, batch_size=16, lr=0.01, **QUIET)
    trainer = Trainer(config)
    trainer.fit(small_model(), train, dev, scheduler_interval=interval,
                scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5))
    decays = (18 // steps_per_decay) // 2
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** decays)
    assert trainer.scheduler.last_epoch == 18 // steps_per_decay


@pytest.mark.parametrize("interval,crash_step", [("epoch", 14), ("step", 9)])
def test_a_run_with_a_scheduler_resumes_bit_identically(tmp_path, interval, crash_step):
    train, dev, test = _data()
    config = TrainConfig(epochs=4, batch_size=16, eval_every=4, lr=0.02, seed=1, **QUIET)

    def schedule(opt):
        return torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7 if interval == "epoch" else 0.9)

    reference = small_model(seed=1)
    Trainer(config).fit(reference, train, dev, test, scheduler=schedule,
                        scheduler_interval=interval)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, callbacks=[CrashAt(crash_step)]).fit(
            small_model(seed=1), train, dev, out_dir=tmp_path, scheduler=schedule,
            scheduler_interval=interval)
    # epoch: written at step 12, the end of epoch 2 before the epoch rolls over (one decay);
    # step: written at step 8
    decays = {"epoch": 1, "step": 8}[interval]
    assert load_checkpoint(tmp_path / "last.pt")["scheduler"]["last_epoch"] == decays
    with pytest.raises(RnnlabError, match="with an LR scheduler"):
        Trainer(config).fit(small_model(), train, dev, out_dir=tmp_path, resume=True)
    resumed = small_model(seed=99)
    Trainer(config).fit(resumed, train, dev, test, out_dir=tmp_path, resume=True,
                        scheduler=schedule, scheduler_interval=interval)
    assert params_equal(resumed, reference)
    # without the scheduler the same run ends elsewhere: the test can tell
    unscheduled = small_model(seed=1)
    Trainer(config).fit(unscheduled, train, dev, test)
    assert not params_equal(unscheduled, reference)


def test_reduce_on_plateau_steps_on_the_dev_loss():
    train, dev, _ = _data()
    config = TrainConfig(epochs=3, batch_size=16, eval_every=2, lr=0.01, **QUIET)
    trainer = Trainer(config)
    trainer.fit(small_model(), train, dev, scheduler=lambda opt:
                torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5))
    assert trainer.scheduler.last_epoch == 9  # one step per evaluation


def test_a_loss_callable_equal_to_the_builtin_loss_gives_the_same_run():
    train, dev, test = _data()
    config = TrainConfig(epochs=2, batch_size=16, eval_every=3, **QUIET)
    builtin, custom, doubled = small_model(seed=4), small_model(seed=4), small_model(seed=4)
    a = Trainer(config).fit(builtin, train, dev, test)
    b = Trainer(config).fit(custom, train, dev, test, loss_fn=F.cross_entropy)
    assert params_equal(builtin, custom)
    assert b.test["loss"] == pytest.approx(a.test["loss"], rel=1e-5)
    sgd = config.replace(optimizer="sgd", lr=0.1)
    Trainer(sgd).fit(builtin, train, dev)
    Trainer(sgd).fit(doubled, train, dev, loss_fn=lambda out, y: 2 * F.cross_entropy(out, y))
    assert not params_equal(builtin, doubled)


def test_metric_callables_are_reported_beside_the_metric(tmp_path):
    train, dev, test = _data()
    config = TrainConfig(epochs=2, batch_size=16, eval_every=3, **QUIET)

    def my_accuracy(output, targets):
        return (output.argmax(-1) == targets).float().mean()

    def top3(output, targets):
        return (output.topk(3, -1).indices == targets[:, None]).any(-1).float().mean()

    result = Trainer(config).fit(small_model(), train, dev, test, out_dir=tmp_path,
                                 metrics={"mine": my_accuracy, "top3": top3})
    assert result.test["mine"] == pytest.approx(result.test["accuracy"])
    assert result.test["top3"] >= result.test["accuracy"]
    rows = read_csv(tmp_path / "metrics.csv")
    assert "dev_top3" in rows[0] and "dev_mine" in rows[0]
    assert all(float(r["dev_mine"]) == pytest.approx(float(r["dev_accuracy"])) for r in rows)
