"""The paper's datasets, read from the files a user already has in ``$SCAR_DATA_DIR`` (default
``~/scar_data``). A missing file is a one-line :class:`~scar.errors.DatasetError` naming the
file, the folder and where to download it.

=================  ============================================================================
covtype            ``covtype.data.gz`` or ``covtype.data`` (UCI): 55 comma-separated integers a
                   line, 54 features then the class 1..7; features are scaled to [0, 1].
jester             ``jester_ratings.dat`` (Jester dataset 2+): ``user item rating`` a line,
                   whitespace separated; or ``jester-data-1.csv`` (-2, -3: dataset 1's sheets
                   saved as CSV): a count, then 100 ratings, 99 = not rated.
20newsgroups       ``20news-bydate.tar.gz`` (J. Rennie's by-date version, train + test); headers
                   up to the first blank line are dropped, then the text pipeline
                   (:mod:`scar.datasets.text`).
rcv1               ``lyrl2004_tokens_train.dat.gz`` and, if present, ``lyrl2004_tokens_test_pt0``
                   .. ``pt3.dat.gz`` (RCV1-v2, Lewis et al. 2004): ``.I id`` / ``.W`` / tokens
                   (already stemmed and stopped); the vocabulary is capped as in the text
                   pipeline.
=================  ============================================================================
"""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import DATA_DIR_ENV, Classification, Corpus, Ratings, ratings_from_triples
from .text import corpus_from_tokens, tokenize


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
