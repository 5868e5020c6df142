"""The text task: tokens, a vocabulary from train only, padding that changes nothing,
packing and masking that agree, the folder loader's clear errors, and a corpus where
a bag of words provably falls short."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.models import model_config_for
from rnnlab.tasks import get_task
from rnnlab.tasks.base import SplitData
from rnnlab.tasks.text import (
    Text,
    Vocabulary,
    bag_of_words_accuracy,
    bag_of_words_ceiling,
    pad,
    tokenize,
)
from rnnlab.tasks.text_corpus import generate
from rnnlab.train import seeded_model


def test_tokens_vocabulary_and_padding():
    assert tokenize("Good, not BAD!<br />Really.") == ["good", ",", "not", "bad", "!",
                                                       "really", "."]
    vocab = Vocabulary.build([["good", "good", "film"], ["good", "plot"]], min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "good"]
    assert vocab.encode(["good", "film", "never-seen"]) == [2, 1, 1]
    ids, lengths = pad([[5, 6, 7], [8]], max_length=2)
    assert ids.tolist() == [[5, 6], [8, 0]] and lengths.tolist() == [2, 1]


def test_vocabulary_is_built_on_train_only(tmp_path):
    write_corpus(tmp_path, {"train/pos": ["a fine film"], "train/neg": ["a dull film"],
                            "test/pos": ["a superb film"], "test/neg": ["a dull one"]})
    task = Text(data_dir=str(tmp_path), dev_every=2)
    splits = task.splits(0)
    vocab = task.vocabulary()
    assert "superb" not in vocab.stoi and "fine" in vocab.stoi
    test_ids = splits["test"].inputs[0, :int(splits["test"].lengths[0])].tolist()
    assert vocab.decode(test_ids) == ["a", "<unk>", "film"]


def bilstm(backend: str = "python", pool: str = "last", vocab: int = 30):
    config = model_config_for(get_task("text").spec, vocab_size=vocab, cell="lstm",
                              bidirectional=True, hidden_size=6, embedding_dim=5,
                              pool=pool, backend=backend)
    return seeded_model(config, 0).eval()


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_padding_changes_nothing_in_either_direction(pool):
    texts = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 14]]
    ids, lengths = pad(texts)
    model = bilstm(pool=pool)
    with torch.no_grad():
        logits, (h_n, c_n) = model(ids, lengths=lengths, return_state=True)
        outputs, _ = model.recurrent(model.embed(ids), lengths=lengths)
        for row, text in enumerate(texts):
            alone = torch.tensor([text])
            single, (h_1, c_1) = model(alone, return_state=True)
            out_1, _ = model.recurrent(model.embed(alone))
            torch.testing.assert_close(logits[row], single[0], atol=1e-6, rtol=0)
            # forward (row 0) and backward (row 1) final states, each direction's own
            torch.testing.assert_close(h_n[:, row], h_1[:, 0], atol=1e-6, rtol=0)
            torch.testing.assert_close(c_n[:, row], c_1[:, 0], atol=1e-6, rtol=0)
            n = len(text)
            torch.testing.assert_close(outputs[row, :n], out_1[0], atol=1e-6, rtol=0)
            assert not outputs[row, n:].any()  # nothing past the end
    # The comparison can fail: reading the padding as tokens changes the answer.
    with torch.no_grad():
        unmasked = model(ids)
    assert not torch.allclose(unmasked[1], logits[1], atol=1e-4)


def test_packing_and_masking_agree():
    ids, lengths = pad([[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 14], [15]])
    masked, packed = bilstm("python"), bilstm("native")
    packed.load_state_dict(masked.state_dict())
    with torch.no_grad():
        a, (h_a, c_a) = masked(ids, lengths=lengths, return_state=True)
        b, (h_b, c_b) = packed(ids, lengths=lengths, return_state=True)
        out_a, _ = masked.recurrent(masked.embed(ids), lengths=lengths)
        out_b, _ = packed.recurrent(packed.embed(ids), lengths=lengths)
    for x, y in ((a, b), (h_a, h_b), (c_a, c_b), (out_a, out_b)):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def write_corpus(root, files: dict[str, list]) -> None:
    for folder, texts in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(texts):
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            (root / folder / f"{i}_7.txt").write_bytes(data)


GOOD = {"train/pos": ["Great film.", "Lovely!", "fine, not bad"],
        "train/neg": ["Awful.", "not good at all", "dull<br />plot"],
        "test/pos": ["brilliant"], "test/neg": ["weak, not fine"]}


def test_loader_reads_the_imdb_layout(tmp_path):
    write_corpus(tmp_path, GOOD)
    (tmp_path / "train" / "pos" / "notes.md").write_text("not a review")
    task = get_task("text", data_dir=str(tmp_path), dev_every=3)
    splits = task.splits(0)
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == (4, 2, 2)
    # every 3rd training review (in file order: pos then neg) is dev
    assert task.reviews()["dev"].texts == ["fine, not bad", "dull<br />plot"]
    assert splits["test"].targets.tolist() == [1, 0]
    assert task.chance == 0.5


@pytest.mark.parametrize("change, message", [
    ({"train/neg": [b"caf\xe9 au lait"]}, r"1_7\.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"),
    ({"test/pos": ["   \n"]}, r"1_7\.txt is empty"),
])
def test_loader_refuses_bad_files_in_one_line(tmp_path, change, message):
    files = {k: list(v) for k, v in GOOD.items()}
    for folder, texts in change.items():
        files[folder] = files[folder][:1] + texts
    write_corpus(tmp_path, files)
    with pytest.raises(RnnlabError, match=message) as err:
        Text(data_dir=str(tmp_path)).splits(0)
    assert "\n" not in str(err.value)


def test_loader_names_a_missing_folder(tmp_path):
    write_corpus(tmp_path, {k: v for k, v in GOOD.items() if k != "test/neg"})
    with pytest.raises(RnnlabError, match=r"no folder .*test/neg; --data-dir must hold"):
        Text(data_dir=str(tmp_path)).splits(0)
    with pytest.raises(RnnlabError, match="no data folder"):
        Text(data_dir=str(tmp_path / "nowhere")).splits(0)


def test_generated_contrast_reviews_defeat_any_bag_of_words():
    reviews = generate(400, torch.Generator().manual_seed(0))
    bags: dict[tuple, Counter] = {}
    for text, label, kind in zip(reviews.texts, reviews.labels, reviews.kinds, strict=True):
        bags.setdefault((kind, tuple(sorted(tokenize(text)))), Counter())[label] += 1
    for (kind, _), labels in bags.items():
        if kind in ("x-not-y", "x-but-y"):  # each bag holds as many of each label
            assert labels[0] == labels[1], kind
    task = Text(n_train=400, n_dev=8, n_test=400)
    splits = task.splits(0)
    assert bag_of_words_ceiling(splits["test"]) == pytest.approx(0.75)
    assert bag_of_words_accuracy(splits["train"], splits["test"], task.vocab_size) < 0.76
    assert sorted(Counter(task.reviews()["test"].labels).values()) == [200, 200]


def test_empty_text_is_refused():
    with pytest.raises(RnnlabError, match="at least one token"):
        pad([[3], []])
    assert isinstance(get_task("text").splits(0)["train"], SplitData)
