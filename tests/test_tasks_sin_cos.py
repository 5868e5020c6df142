import math

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task


def test_shapes_ranges_and_identity():
    task = get_task("sin-cos", n_train=16, n_dev=4, n_test=8)
    splits = task.splits(0)
    for split, n in (("train", 16), ("dev", 4), ("test", 8)):
        assert splits[split].inputs.shape == (n, 10, 1)
        assert splits[split].targets.shape == (n, 10, 1)
    x, y = splits["train"].inputs, splits["train"].targets
    assert torch.allclose(x ** 2 + y ** 2, torch.ones_like(x), atol=1e-5)
    assert torch.equal(task.splits(0)["dev"].inputs, splits["dev"].inputs)
    assert not torch.equal(task.splits(1)["dev"].inputs, splits["dev"].inputs)


def test_stream_matches_the_seed_chunks():
    task = get_task("sin-cos")
    stream = task.stream(3)
    assert stream.inputs.shape == (3, 10, 1)
    # chunk k covers [k*pi, (k+1)*pi] with both ends, as np.linspace does
    times = torch.linspace(math.pi, 2 * math.pi, 10, dtype=torch.float64)
    assert torch.allclose(stream.inputs[1, :, 0], torch.sin(times).float(), atol=1e-6)
    assert torch.allclose(stream.targets[2, 0, 0], torch.tensor(1.0))  # cos(2*pi)
    assert torch.allclose(stream.targets[1, 0, 0], torch.tensor(-1.0))  # cos(pi)


def test_memoryless_baseline_is_about_half():
    task = get_task("sin-cos")
    baseline = task.memoryless_baseline(task.splits(0))
    assert 0.45 < baseline < 0.55
    assert task.chance == 0.5


@pytest.mark.parametrize("params, word", [
    ({"length": 1}, "length"), ({"span": -1.0}, "span"), ({"n_dev": 0}, "n_dev"),
])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("sin-cos", **params)


def test_stream_needs_a_chunk():
    with pytest.raises(RnnlabError, match="n_chunks"):
        get_task("sin-cos").stream(0)
