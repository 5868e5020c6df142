"""Where the ``text`` task's reviews come from: a folder on disk, or a generated corpus.

The folder has the layout of the IMDB movie-review release (and of most sentiment
corpora that copy it)::

    DATA_DIR/train/pos/*.txt   DATA_DIR/train/neg/*.txt
    DATA_DIR/test/pos/*.txt    DATA_DIR/test/neg/*.txt

one review per file, label 1 for ``pos`` and 0 for ``neg``. Files are read as UTF-8
and a file that is not UTF-8, or holds no word, is refused with one line naming it
(a silently replaced byte or a dropped review would change the data without anyone
knowing; convert the file, e.g. ``iconv -f latin1 -t utf-8``, or remove it).

The generated corpus needs no download. Its reviews are short sentences over a small
vocabulary in which the order of the words decides the label: ``good , not bad`` is
positive, ``bad , not good`` negative, ``bad but good`` positive, with the same words.
Every review comes with its mirror (the two sentiment words swapped, the other
label); for the contrast kinds the mirror has exactly the same bag of words, so a
model that sees only which words occur (a bag of words) gets exactly half of them
right, whatever it learned: on the corpus's four kinds it can reach at most 75%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rnnlab.errors import RnnlabError, ensure

LAYOUT = ("train/pos", "train/neg", "test/pos", "test/neg")
LAYOUT_HINT = ("--data-dir must hold train/pos, train/neg, test/pos and test/neg folders of "
               ".txt files (the IMDB layout)")

POSITIVE = ("good", "great", "fine", "nice", "excellent", "superb", "lovely", "brilliant")
NEGATIVE = ("bad", "awful", "poor", "dull", "terrible", "boring", "weak", "bland")
OPENINGS = (("the", "movie", "was"), ("the", "film", "is"), ("the", "acting", "was"),
            ("honestly", "the", "plot", "felt"), ("i", "found", "the", "story"),
            ("the", "cast", "was"), ("this", "one", "is"), ())
INTENSIFIERS = ("really", "quite", "very", "rather")
ENDINGS = (("overall",), ("to", "be", "honest"), ("in", "the", "end"), ())
# Kinds of review: whether a bag of words can tell its label.
KINDS = ("plain", "negated", "x-not-y", "x-but-y")


@dataclass
class Reviews:
    """Texts with their labels (1 positive, 0 negative) and, when generated, their kind."""

    texts: list[str]
    labels: list[int]
    kinds: list[str] | None = None


def read_folder(data_dir: str | Path, part: str) -> Reviews:
    """The reviews of ``part`` (``"train"`` or ``"test"``) in the IMDB layout, sorted by
    file name within ``pos`` then ``neg`` (so the order never depends on the file system)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise RnnlabError(f"no data folder at {root}; {LAYOUT_HINT}")
    texts, labels = [], []
    for label, name in ((1, "pos"), (0, "neg")):
        folder = root / part / name
        if not folder.is_dir():
            raise RnnlabError(f"no folder {folder}; {LAYOUT_HINT}")
        files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise RnnlabError(f"{folder} holds no .txt files; {LAYOUT_HINT}")
        for path in files:
            texts.append(_read_review(path))
            labels.append(label)
    return Reviews(texts, labels)


def _read_review(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RnnlabError(
            f"{path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove it") from err
    if not text.strip():
        raise RnnlabError(f"{path} is empty; every review needs at least one word, "
                          "so remove the file or fill it")
    return text


def generate(n: int, generator: torch.Generator) -> Reviews:
    """``n`` generated reviews (``n`` even), in mirrored pairs, balanced over the kinds.

    Kinds: ``plain`` ("the movie was good"), ``negated`` ("the movie was not good"),
    ``x-not-y`` ("the movie was good , not bad": the label of the first word) and
    ``x-but-y`` ("the movie was bad but good": the label of the second). Each review
    comes with its mirror: the same sentence with the positive and the negative word
    swapped, and the other label. A mirrored contrast review has exactly the same words,
    so any bag-of-words classifier answers both alike and gets exactly one of the two
    right. The openings, intensifiers and endings vary the length, so a batch needs
    padding.
    """
    ensure(n >= 2 and n % 2 == 0, f"the generated corpus needs an even number of reviews, "
          f"got {n}")

    def pick(options: tuple) -> object:
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    texts, labels, kinds = [], [], []
    for pair in range(n // 2):
        kind = KINDS[pair % len(KINDS)]
        before = list(pick(OPENINGS))
        if bool(torch.rand(1, generator=generator) < 0.3):
            before.append(str(pick(INTENSIFIERS)))
        after = list(pick(ENDINGS))
        good, bad = str(pick(POSITIVE)), str(pick(NEGATIVE))
        for label, (wanted, other) in ((1, (good, bad)), (0, (bad, good))):
            core = {"plain": [wanted], "negated": ["not", other],
                    "x-not-y": [wanted, ",", "not", other], "x-but-y": [other, "but", wanted]}
            texts.append(" ".join(before + core[kind] + after))
            labels.append(label)
            kinds.append(kind)
    order = torch.randperm(n, generator=generator).tolist()
    return Reviews([texts[i] for i in order], [labels[i] for i in order],
                   [kinds[i] for i in order])
