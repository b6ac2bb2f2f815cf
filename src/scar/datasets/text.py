"""The text pipeline every corpus built from raw text goes through (news articles, 20 Newsgroups,
and the vocabulary cap of RCV1).

Lower-case, tokens are runs of letters ``a-z`` of length >= 3, scikit-learn's English stop words
removed; the vocabulary keeps words that occur in at least ``MIN_DOCS`` documents and at most
``MAX_DOC_FRACTION`` of them, capped at the ``VOCAB_CAP`` most frequent (ties by the word),
numbered alphabetically. Documents keep their place even when no token survives (they then hold
no tokens).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np

from ..errors import DatasetError
from .base import Corpus

VOCAB_CAP = 5000
MIN_DOCS = 5
MAX_DOC_FRACTION = 0.5
MIN_LENGTH = 3
_TOKEN = re.compile(r"[a-z]{3,}")  # maximal letter runs of length >= MIN_LENGTH (3)


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # heavy: only for text

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
