"""DigitSum (seed 004): the generator, its files, its chance level and baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.models import model_config_for
from rnnlab.tasks import get_task
from rnnlab.tasks.base import SplitData
from rnnlab.tasks.digitsum import DigitSum, generate, read_file, write_file


def test_split_sizes_follow_k():
    splits = DigitSum(length=10).splits(0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "dev": 100, "test": 100}
    bigger = DigitSum(length=10, k_train=5, k_dev=2, k_test=20).splits(0)
    assert {k: len(v) for k, v in bigger.items()} == {"train": 500, "dev": 200, "test": 2000}
    assert bigger["train"].inputs.dtype == torch.int64 and bigger["train"].inputs.shape[1] == 10


def test_labels_are_the_sum_of_the_first_two_digits_in_base_order():
    digits, labels = generate(8, 3, np.random.default_rng(0))
    assert labels.tolist() == (digits[:, 0] + digits[:, 1]).tolist()
    pairs = [(n1, n2) for n1 in range(10) for n2 in range(10) for _ in range(3)]
    assert list(map(tuple, digits[:, :2].tolist())) == pairs


def test_exactly_one_noise_position_after_the_first_two():
    length, k = 7, 200
    digits, _ = generate(length, k, np.random.default_rng(1))
    tail = digits[:, 2:]
    assert ((tail != 0).sum(1) <= 1).all()  # at most one non-zero after the pair
    assert tail.min() >= 0 and tail.max() <= 9
    # the noise digit is uniform on 0..9, so about a tenth of the copies stay all-zero
    unchanged = float(((tail != 0).sum(1) == 0).mean())
    assert 0.07 < unchanged < 0.13
    # every position 2..L-1 is used, about equally
    positions = np.argmax(tail != 0, axis=1)[(tail != 0).any(1)] + 2
    counts = np.bincount(positions, minlength=length)
    assert counts[:2].sum() == 0 and (counts[2:] > 0.8 * counts[2:].mean()).all()


def test_noise_is_drawn_position_then_digit():
    class Recorder:
        def __init__(self):
            self.calls = []

        def integers(self, low, high):
            self.calls.append((low, high))
            return low if len(self.calls) % 2 else 0

    rng = Recorder()
    generate(5, 1, rng)
    assert rng.calls[:4] == [(2, 5), (0, 10), (2, 5), (0, 10)] and len(rng.calls) == 200


def test_seeded_splits_are_deterministic_and_distinct():
    a, b = DigitSum(length=12).splits(7), DigitSum(length=12).splits(7)
    for name in a:
        assert torch.equal(a[name].inputs, b[name].inputs)
    assert not torch.equal(a["dev"].inputs, a["test"].inputs)
    assert not torch.equal(a["train"].inputs[::3], a["dev"].inputs)
    assert not torch.equal(DigitSum(length=12).splits(8)["dev"].inputs, a["dev"].inputs)


def test_files_round_trip(tmp_path):
    task = DigitSum(length=6)
    paths = task.save(tmp_path, seed=3)
    first = paths["dev"].read_text().splitlines()[0]
    digits, label = first.split("\t")
    assert len(digits.split(" ")) == 6 and int(label) == int(digits[0]) + int(digits[2])
    loaded = DigitSum(length=6, data_dir=str(tmp_path)).splits()
    for name, split in task.splits(3).items():
        assert torch.equal(loaded[name].inputs, split.inputs)
        assert torch.equal(loaded[name].targets, split.targets)
        assert loaded[name].lengths is None


def test_files_must_match_the_task_length(tmp_path):
    DigitSum(length=6).save(tmp_path)
    with pytest.raises(RnnlabError, match="holds sequences of length 6, but the task has "
                                          "length=10; give the files' length"):
        DigitSum(length=10, data_dir=str(tmp_path)).splits()


def test_files_of_mixed_lengths_get_lengths(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("1 2 0\t3\n\n4 5 0 0 7\t9\n")
    split = read_file(path)
    assert split.inputs.tolist() == [[1, 2, 0, 0, 0], [4, 5, 0, 0, 7]]
    assert split.lengths.tolist() == [3, 5] and split.targets.tolist() == [3, 9]
    write_file(tmp_path / "again.txt", split)
    assert (tmp_path / "again.txt").read_text() == "1 2 0\t3\n4 5 0 0 7\t9\n"


@pytest.mark.parametrize("text, message", [
    ("1 2 0\t3\n1 2 0 3\n", "line 2: expected 'digits<TAB>label'"),
    ("1 2 0\t3\n\n1 x 0\t3\n", "line 3: 'x' is not a digit 0-9"),
    ("1 2 12\t3\n", "line 1: '12' is not a digit 0-9"),
    ("1 2 0\t19\n", "line 1: label '19' is not a sum 0-18"),
    ("1 2 0\t\n", "line 1: label '' is not a sum 0-18"),
    ("1 2 0\t\u00b2\n", "line 1: label '\u00b2' is not a sum 0-18"),  # isdigit, not int
    ("1 \u00b2 0\t3\n", "line 1: '\u00b2' is not a digit 0-9"),
    ("\n\n", "holds no examples"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(RnnlabError, match=message) as info:
        read_file(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(RnnlabError, match="no DigitSum data file"):
        read_file(tmp_path / "train.txt")
    with pytest.raises(RnnlabError, match="no DigitSum data file"):
        DigitSum(data_dir=str(tmp_path)).splits()


@pytest.mark.parametrize("params, message", [
    ({"length": 2}, "length must be at least 3"),
    ({"length": 0}, "length must be at least 3"),
    ({"k_train": 0}, "k_train .* must be at least 1"),
    ({"k_test": -1}, "k_test .* must be at least 1"),
])
def test_bad_parameters(params, message):
    with pytest.raises(RnnlabError, match=message):
        get_task("digitsum", **params)
    with pytest.raises(RnnlabError):
        generate(params.get("length", 5), params.get("k_train", params.get("k_test", 1)),
                 np.random.default_rng(0))


def test_chance_is_the_majority_class_rate():
    task = DigitSum(length=5)
    labels = DigitSum(length=5, k_test=4).splits(0)["test"].targets
    assert task.chance == pytest.approx(float(torch.bincount(labels).max()) / len(labels))
    assert task.chance == pytest.approx(0.10) and task.chance > 1 / 19


def test_memoryless_baseline_is_majority_label_given_last_digit():
    train = SplitData(torch.tensor([[1, 1, 0], [2, 2, 0], [3, 3, 5], [4, 5, 5], [0, 9, 5]]),
                      torch.tensor([2, 2, 6, 9, 9]))
    test = SplitData(torch.tensor([[1, 7, 0], [9, 0, 5], [3, 3, 7], [0, 0, 0]]),
                     torch.tensor([8, 9, 2, 0]))
    # last digit 0 -> 2, 5 -> 9, unseen 7 -> overall majority (2 and 9 tie; argmax takes 2)
    assert DigitSum(length=3).memoryless_baseline({"train": train, "test": test}) == 0.5
    splits = DigitSum(length=20).splits(0)
    baseline = DigitSum(length=20).memoryless_baseline(splits)
    assert 0.0 < baseline < 0.2


def test_model_config_fits_the_task():
    config = model_config_for(DigitSum(length=5).spec, cell="gru", hidden_size=8)
    assert (config.vocab_size, config.num_outputs, config.head) == (10, 19, "classify")


def test_binary_file_and_negative_seed_are_user_errors(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"\xff\xfe1 2 0\t3\n")
    with pytest.raises(RnnlabError, match="is not a UTF-8 text file") as info:
        read_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(RnnlabError, match="seed must be a whole number >= 0"):
        get_task("digitsum", length=5).splits(-1)
