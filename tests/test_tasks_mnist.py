import gzip
import shutil

import numpy as np
import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.tasks.mnist import MNIST_FILES, load_mnist


def _idx(kind: str, data: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else (2051 if kind == "images" else 2049)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in data.shape)
    return header + data.astype(np.uint8).tobytes()


def _write_small_mnist(folder, n_train=6, n_test=4, compress=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        files = {"images": rng.integers(0, 256, (n, 28, 28)), "labels": np.arange(n) % 10}
        for kind, data in files.items():
            raw = _idx(kind, data)
            name = MNIST_FILES[(split, kind)]
            if compress:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return folder


def test_loader_reads_the_original_files(mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,)
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(labels).tolist() == counts


def test_rows_task_on_a_subset(mnist_dir):
    task = get_task("mnist-rows", data_dir=str(mnist_dir), n_train=300, n_test=200, dev_size=100)
    splits = task.splits(0)
    assert splits["train"].inputs.shape == (300, 28, 28)
    assert splits["dev"].inputs.shape == (100, 28, 28)
    assert splits["test"].inputs.shape == (200, 28, 28)
    assert splits["train"].inputs.dtype == torch.float32
    assert 0 <= splits["train"].inputs.min() and splits["train"].inputs.max() <= 1
    # dev images are held out of train, and the split seed picks them
    assert torch.equal(task.splits(0)["dev"].inputs, splits["dev"].inputs)
    assert not torch.equal(task.splits(1)["dev"].inputs, splits["dev"].inputs)
    assert 0.05 < task.memoryless_baseline(splits) < 0.4


def test_pixel_and_permuted_views(mnist_dir):
    rows = get_task("mnist-rows", data_dir=str(mnist_dir), n_train=20, n_test=10, dev_size=5)
    pixel = get_task("pixel-mnist", data_dir=str(mnist_dir), n_train=20, n_test=10, dev_size=5)
    permuted = get_task("permuted-pixel-mnist", data_dir=str(mnist_dir), n_train=20,
                        n_test=10, dev_size=5)
    r, p, q = rows.splits(0)["test"], pixel.splits(0)["test"], permuted.splits(0)["test"]
    assert p.inputs.shape == (10, 784, 1) and q.inputs.shape == (10, 784, 1)
    assert torch.equal(p.inputs.reshape(10, 28, 28), r.inputs)
    assert torch.equal(q.inputs[:, :, 0], p.inputs[:, permuted.permutation, 0])
    assert torch.equal(permuted.permutation, permuted.permutation)  # fixed, not per call
    other = get_task("permuted-pixel-mnist", data_dir=str(mnist_dir), permutation_seed=1)
    assert not torch.equal(other.permutation, permuted.permutation)
    assert torch.equal(q.targets, r.targets)


def test_plain_files_and_the_mnist_subfolder(tmp_path):
    _write_small_mnist(tmp_path / "mnist", compress=False)
    task = get_task("mnist-rows", data_dir=str(tmp_path), dev_size=2)
    splits = task.splits(0)
    assert len(splits["train"]) == 4 and len(splits["dev"]) == 2 and len(splits["test"]) == 4


def test_environment_variable_is_the_default(tmp_path, monkeypatch):
    _write_small_mnist(tmp_path / "data")
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "data"))
    images, _ = load_mnist(None, "train")
    assert images.shape == (6, 28, 28)


def test_missing_file_names_it_and_where_to_get_it(tmp_path):
    folder = _write_small_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(RnnlabError, match=r"t10k-labels-idx1-ubyte.*not found.*download"):
        get_task("mnist-rows", data_dir=str(folder), dev_size=1).splits(0)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], "data bytes"),                        # truncated download
    (lambda raw: (2049).to_bytes(4, "big") + raw[4:], "magic"),  # labels file in its place
    (lambda raw: raw[:10], "bytes"),                             # cut inside the header
])
def test_corrupt_image_file(tmp_path, damage, message):
    folder = _write_small_mnist(tmp_path / "m", compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RnnlabError, match=rf"train-images-idx3-ubyte.*{message}.*download"):
        load_mnist(folder, "train")


def test_broken_gzip_and_wrong_labels(tmp_path):
    folder = _write_small_mnist(tmp_path / "m")
    gz = folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(RnnlabError, match="corrupt"):
        load_mnist(folder, "train")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(_idx("labels", np.array([1, 2, 30, 4]))))
    with pytest.raises(RnnlabError, match="not a digit"):
        load_mnist(folder, "test")
    labels.write_bytes(gzip.compress(_idx("labels", np.array([1, 2, 3]))))
    with pytest.raises(RnnlabError, match="4 images but 3 labels"):
        load_mnist(folder, "test")


def test_wrong_image_size(tmp_path):
    folder = _write_small_mnist(tmp_path / "m")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx("images", np.zeros((4, 32, 32)))))
    with pytest.raises(RnnlabError, match="32x32"):
        load_mnist(folder, "test")


def test_impossible_parameters(tmp_path):
    folder = _write_small_mnist(tmp_path / "m")
    with pytest.raises(RnnlabError, match="dev_size"):
        get_task("mnist-rows", dev_size=-1)
    with pytest.raises(RnnlabError, match="n_train"):
        get_task("mnist-rows", n_train=0)
    with pytest.raises(RnnlabError, match="dev_size must be smaller"):
        get_task("mnist-rows", data_dir=str(folder), dev_size=6).splits(0)


def test_copy_of_shared_files_loads_the_same(mnist_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(mnist_dir / name) as src, open(tmp_path / name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain, plain_labels = load_mnist(tmp_path, "test")
    packed, packed_labels = load_mnist(mnist_dir, "test")
    assert torch.equal(plain, packed) and torch.equal(plain_labels, packed_labels)
