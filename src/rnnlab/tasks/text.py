"""Task ``text`` (seed 004's last case study): classify the sentiment of a review.

Text becomes tensors in three steps, each a function here:

1. :func:`tokenize`: lower case, ``<br />`` tags dropped, words (letters, digits,
   apostrophes) and single punctuation marks as tokens;
2. :class:`Vocabulary`: built on the **training split only** (a word seen only in dev
   or test must look unknown, as it would to a deployed model), keeping words seen at
   least ``min_count`` times; id 0 is padding (``<pad>``) and id 1 every unknown word
   (``<unk>``);
3. :func:`pad`: a batch of id lists becomes one ``(N, L)`` tensor, padded with 0 at
   the end, and the ``(N,)`` true lengths, which the model uses to mask the padding
   (both directions: the backward direction starts at each text's last real token).

The reviews come from a folder in the IMDB layout (``data_dir``) or from the generated
corpus of :mod:`rnnlab.tasks.text_corpus`, where word order and negation decide the
label. The memoryless baseline is a bag-of-words logistic regression: it sees which
words occur, never in which order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.text_corpus import Reviews, generate, read_folder

PAD, UNK = "<pad>", "<unk>"
_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"Good, not bad!"`` ->
    ``["good", ",", "not", "bad", "!"]``."""
    return _TOKEN.findall(_TAG.sub(" ", text).lower())


class Vocabulary:
    """Token <-> id, built from training texts: ``<pad>`` is 0, ``<unk>`` is 1, then the
    words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = [PAD, UNK, *tokens]
        self.stoi = {token: i for i, token in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[list[str]], min_count: int = 1) -> Vocabulary:
        ensure(min_count >= 1, f"min_count must be at least 1, got {min_count}")
        counts = Counter(token for tokens in texts for token in tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; a word not in the vocabulary is ``<unk>`` (1)."""
        return [self.stoi.get(token, 1) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]


def pad(sequences: Sequence[Sequence[int]], max_length: int | None = None
        ) -> tuple[Tensor, Tensor]:
    """``(ids (N, L), lengths (N,))``: each sequence cut to ``max_length`` and padded with
    0 at its end to the longest one."""
    cut = [list(s[:max_length] if max_length else s) for s in sequences]
    ensure(all(cut), "every text needs at least one token")
    lengths = torch.tensor([len(s) for s in cut], dtype=torch.int64)
    ids = torch.zeros(len(cut), int(lengths.max()), dtype=torch.int64)
    for row, s in enumerate(cut):
        ids[row, :len(s)] = torch.tensor(s, dtype=torch.int64)
    return ids, lengths


@dataclass
class Text(Task):
    """Sentiment classification of reviews: token ids in, positive (1) or negative (0) out.

    Args:
        data_dir: a folder in the IMDB layout (``train/pos``, ``train/neg``, ``test/pos``,
            ``test/neg``); ``None`` uses the generated corpus.
        n_train, n_dev, n_test: sizes of the generated corpus's splits.
        dev_every: with ``data_dir``, every this-many-th training review (in file order)
            is held out as the dev split.
        min_count: a word enters the vocabulary when seen this often in training.
        max_length: texts are cut to this many tokens.
    """

    name: ClassVar[str] = "text"
    description: ClassVar[str] = "sentiment of a review; word order and negation matter"
    head: ClassVar[str] = "classify"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"

    data_dir: str | None = None
    n_train: int = 2000
    n_dev: int = 500
    n_test: int = 1000
    dev_every: int = 10
    min_count: int = 1
    max_length: int = 400
    _loaded: dict[int, tuple[dict[str, Reviews], Vocabulary]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check_split_sizes()
        for name, least in (("dev_every", 2), ("min_count", 1), ("max_length", 1)):
            value = getattr(self, name)
            ensure(value >= least, f"{name} must be at least {least}, got {value}")

    @property
    def vocab_size(self) -> int:
        """The vocabulary's size (built on the training split of the last seed loaded)."""
        return len(self.vocabulary())

    @property
    def num_outputs(self) -> int:
        return 2

    @property
    def chance(self) -> float:
        """Always answering the more common label of the test split."""
        test = self.reviews()["test"].labels
        return max(sum(test), len(test) - sum(test)) / len(test)

    # --- data --------------------------------------------------------------------------
    def reviews(self, seed: int | None = None) -> dict[str, Reviews]:
        """The raw reviews of each split (``seed``: the last loaded, else 0)."""
        return self._load(seed)[0]

    def vocabulary(self, seed: int | None = None) -> Vocabulary:
        return self._load(seed)[1]

    def _load(self, seed: int | None) -> tuple[dict[str, Reviews], Vocabulary]:
        if seed is None:
            seed = next(reversed(self._loaded)) if self._loaded else 0
        if seed not in self._loaded:
            reviews = self._read() if self.data_dir is not None else self._generate(seed)
            vocab = Vocabulary.build((tokenize(t) for t in reviews["train"].texts),
                                     self.min_count)
            self._loaded[seed] = (reviews, vocab)
        self._loaded[seed] = self._loaded.pop(seed)  # the most recent is last
        return self._loaded[seed]

    def _generate(self, seed: int) -> dict[str, Reviews]:
        sizes = {"train": self.n_train, "dev": self.n_dev, "test": self.n_test}
        return {name: generate(n, torch.Generator().manual_seed(3 * seed + k))
                for k, (name, n) in enumerate(sizes.items())}

    def _read(self) -> dict[str, Reviews]:
        """The folder's train and test; dev is every ``dev_every``-th training review
        (fixed, so the vocabulary and the splits do not depend on the seed)."""
        train, test = read_folder(self.data_dir, "train"), read_folder(self.data_dir, "test")
        held = set(range(self.dev_every - 1, len(train.texts), self.dev_every))
        ensure(len(held) < len(train.texts),
              f"{self.data_dir}: too few training reviews to hold out a dev split")

        def part(keep: bool) -> Reviews:
            rows = [i for i in range(len(train.texts)) if (i in held) != keep]
            return Reviews([train.texts[i] for i in rows], [train.labels[i] for i in rows])

        return {"train": part(True), "dev": part(False), "test": test}

    def encode(self, reviews: Reviews, vocab: Vocabulary) -> SplitData:
        ids, lengths = pad([vocab.encode(tokenize(t)) for t in reviews.texts], self.max_length)
        return SplitData(ids, torch.tensor(reviews.labels, dtype=torch.int64), lengths)

    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        reviews, vocab = self._load(seed)
        return {name: self.encode(r, vocab) for name, r in reviews.items()}

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """Test accuracy of a bag-of-words logistic regression (order never seen)."""
        return bag_of_words_accuracy(splits["train"], splits["test"], self.vocab_size)


def _bags(split: SplitData, vocab_size: int) -> Tensor:
    """Word counts ``(N, V)`` of each text (padding not counted); sparse when a dense
    matrix would be large (a real corpus has tens of thousands of words)."""
    if len(split) * vocab_size <= 20_000_000:
        counts = torch.zeros(len(split), vocab_size)
        counts.scatter_add_(1, split.inputs, torch.ones(split.inputs.shape))
        counts[:, 0] = 0
        return counts
    rows = torch.arange(len(split)).unsqueeze(1).expand_as(split.inputs)
    real = split.inputs != 0
    index = torch.stack([rows[real], split.inputs[real]])
    return torch.sparse_coo_tensor(index, torch.ones(index.shape[1]),
                                   (len(split), vocab_size), check_invariants=True).coalesce()


def bag_of_words_accuracy(train: SplitData, test: SplitData, vocab_size: int) -> float:
    """Test accuracy of :func:`bag_of_words_predictions`."""
    predicted = bag_of_words_predictions(train, test, vocab_size)
    return float((predicted == test.targets).float().mean())


def bag_of_words_predictions(train: SplitData, test: SplitData, vocab_size: int,
                             steps: int = 300, seed: int = 0) -> Tensor:
    """Classes predicted for ``test`` by a logistic regression on word counts trained on
    ``train`` (full batch, Adam 0.05, ``steps`` steps, L2 1e-4)."""
    classes = int(max(int(train.targets.max()), int(test.targets.max()))) + 1
    g = torch.Generator().manual_seed(seed)
    weight = (torch.randn(vocab_size, classes, generator=g) * 0.01).requires_grad_()
    bias = torch.zeros(classes, requires_grad=True)
    x_train, x_test = _bags(train, vocab_size), _bags(test, vocab_size)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy((x_train @ weight) + bias, train.targets).backward()
        optimizer.step()
    with torch.no_grad():
        return (x_test @ weight + bias).argmax(1)


def bag_of_words_ceiling(test: SplitData) -> float:
    """The best accuracy *any* bag-of-words classifier could reach on ``test``: texts with
    the same multiset of words get the same answer, at best their majority label (an
    upper bound, computed with the test labels themselves)."""
    groups: dict[tuple[int, ...], Counter] = {}
    for row in range(len(test)):
        n = int(test.lengths[row]) if test.lengths is not None else test.inputs.shape[1]
        bag = tuple(sorted(test.inputs[row, :n].tolist()))
        groups.setdefault(bag, Counter())[int(test.targets[row])] += 1
    return sum(max(c.values()) for c in groups.values()) / len(test)
