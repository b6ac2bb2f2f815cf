"""Latent Dirichlet allocation by collapsed Gibbs sampling.

Server table ``word_topic`` (rows = words, width = K topics, float32 holding integer counts
n_wk): what a parameter server shards. Worker-side state (``aux``): the topic assignment ``z`` of
every token and the document-topic counts n_dk. A server failure loses word rows only; the
workers' z and n_dk survive (partial recovery); a full rollback rewinds them too (``aux_state``).
Topic totals n_k are recomputed from the table at every sweep, so they are always consistent.

One iteration is one sequential sweep over all tokens (the standard collapsed Gibbs sampler,
compiled with numba). Its randomness is keyed by the iteration: token ``i`` of sweep ``k``
uses ``splitmix64(key_k + i * golden)`` with ``key_k`` drawn from ``SeedSequence([seed, k])``,
so a clean and a perturbed run see the same random numbers and a rewind replays them.

Objective: the negative *joint* log-likelihood per token, ``-log p(w, z) / N`` (what the ``lda``
package reports as its log-likelihood; ``log p(w | z)`` alone is not monotone along the chain).

After a recovery the restored rows are made authoritative (:meth:`LDA.after_restore`): a word's
row sum (its corpus count) never changes, so the assignments of that word's tokens are re-dealt
to match the restored counts - tokens whose topic has more tokens than the restored count are
picked at random and moved to the topics short of tokens, in random order - and n_dk follows.
A token keeps its topic whenever it can, so a consistent row is left untouched. Without this a
restored row disagrees with z forever (Gibbs updates are decrements and increments) and the
objective never reaches its target.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numba import njit

from .. import validation as check
from ..datasets import Corpus
from ..errors import StoreError
from .base import Algorithm, Tables

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class LDAParams:
    topics: int = 20
    alpha: float = 0.1
    beta: float = 0.01
    seed: int = 0


def stream_key(*words: int) -> np.uint64:
    """The 64-bit key of a random stream named by whole numbers (e.g. seed and iteration)."""
    return np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0]


def sweep_key(
    seed: int, iteration: int, first_token: int = 0, chain: tuple[int, ...] = ()
) -> np.uint64:
    """The key of sweep ``iteration`` for the tokens from ``first_token`` on: token ``i`` of a
    sweep over them draws the number token ``first_token + i`` draws in a sweep over the whole
    corpus (a token's counter advances the key by the golden ratio). ``chain``: words of the
    algorithm's chain (``Algorithm.chain_words``)."""
    key = int(stream_key(seed, iteration, *chain))
    return np.uint64((key + first_token * int(_GOLDEN)) % 2**64)


@njit(inline="always")
def _uniform(key, i):  # pragma: no cover - compiled
    """Counter-based uniform in [0, 1): splitmix64 of key + i * golden ratio."""
    x = key + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return np.float64(x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _count(words, docs, z, nwt, ndt):  # pragma: no cover - compiled
    nwt[:, :] = 0
    ndt[:, :] = 0
    for i in range(words.shape[0]):
        nwt[words[i], z[i]] += 1
        ndt[docs[i], z[i]] += 1


@njit(cache=True)
def gibbs_sweep(words, docs, z, nwt, ndt, nt, alpha, beta, vbeta, key):  # pragma: no cover
    """One collapsed Gibbs sweep over every token, in order (token ``i`` draws its uniform from
    ``key`` and ``i``: see ``sweep_key``). ``z``, ``nwt``, ``ndt`` and the topic totals ``nt``
    are updated in place."""
    K = nt.shape[0]
    inv = np.empty(K)
    cum = np.empty(K)
    for k in range(K):
        inv[k] = 1.0 / (nt[k] + vbeta)
    for i in range(words.shape[0]):
        w, d, t = words[i], docs[i], z[i]
        nwt[w, t] -= 1
        ndt[d, t] -= 1
        nt[t] -= 1.0
        inv[t] = 1.0 / (nt[t] + vbeta)
        total = 0.0
        for k in range(K):
            total += (nwt[w, k] + beta) * (ndt[d, k] + alpha) * inv[k]
            cum[k] = total
        u = _uniform(key, i) * total
        lo, hi = 0, K - 1  # first k with cum[k] > u
        while lo < hi:
            mid = (lo + hi) >> 1
            if cum[mid] > u:
                hi = mid
            else:
                lo = mid + 1
        z[i] = lo
        nwt[w, lo] += 1
        ndt[d, lo] += 1
        nt[lo] += 1.0
        inv[lo] = 1.0 / (nt[lo] + vbeta)


@njit(cache=True)
def joint_loglik(nwt, ndt, alpha, beta):  # pragma: no cover - compiled
    """Joint log p(w, z) of the counts (zero counts contribute constants, added in closed form)."""
    V, K = nwt.shape
    D = ndt.shape[0]
    nt = np.zeros(K)
    lgb, lga = math.lgamma(beta), math.lgamma(alpha)
    s = 0.0
    for w in range(V):
        for k in range(K):
            n = np.float64(nwt[w, k])
            if n > 0:
                nt[k] += n
                s += math.lgamma(n + beta) - lgb
    ll = K * math.lgamma(V * beta) + s
    for k in range(K):
        ll -= math.lgamma(nt[k] + V * beta)
    s = 0.0
    for d in range(D):
        nd = 0.0
        for k in range(K):
            n = np.float64(ndt[d, k])
            if n > 0:
                nd += n
                s += math.lgamma(n + alpha) - lga
        ll -= math.lgamma(nd + K * alpha)
    return ll + s + D * math.lgamma(K * alpha)


@njit(cache=True)
def _redeal(rows, word_ptr, word_tokens, z, docs, nwt, ndt, key):  # pragma: no cover
    """Make z agree with the (restored) rows of nwt, moving as few tokens as possible."""
    K = nwt.shape[1]
    have = np.empty(K, np.int64)
    longest = 0
    for r in range(rows.shape[0]):
        longest = max(longest, word_ptr[rows[r] + 1] - word_ptr[rows[r]])
    order = np.empty(longest, np.int64)
    moving = np.empty(longest, np.int64)
    draw = 0
    for r in range(rows.shape[0]):
        w = rows[r]
        s, e = word_ptr[w], word_ptr[w + 1]
        have[:] = 0
        for j in range(s, e):
            have[z[word_tokens[j]]] += 1
        n = e - s
        for j in range(n):  # a random order of the word's tokens (Fisher-Yates)
            order[j] = word_tokens[s + j]
        for j in range(n - 1, 0, -1):
            m = int(_uniform(key, draw) * (j + 1))
            draw += 1
            order[j], order[m] = order[m], order[j]
        n_moving = 0
        for j in range(n):  # surplus tokens leave their topic
            t = z[order[j]]
            if have[t] > nwt[w, t]:
                have[t] -= 1
                moving[n_moving] = order[j]
                n_moving += 1
        k = 0
        for j in range(n_moving):  # ... and fill the topics short of tokens
            while have[k] >= nwt[w, k]:
                k += 1
            i = moving[j]
            ndt[docs[i], z[i]] -= 1
            ndt[docs[i], k] += 1
            z[i] = k
            have[k] += 1


def perplexity(counts, doc_topic: np.ndarray, topic_word: np.ndarray) -> float:
    """exp(-sum_dw n_dw log sum_k theta_dk phi_kw / N) of a document-word count matrix
    (scipy sparse), theta = doc_topic (D x K), phi = topic_word (K x V)."""
    c = counts.tocoo()
    p = np.einsum("ij,ji->i", doc_topic[c.row], topic_word[:, c.col])
    return float(np.exp(-np.sum(c.data * np.log(p)) / c.data.sum()))


def reference_lda(topics: int, alpha: float, beta: float, iterations: int, seed: int = 0):
    """An unfitted ``lda.LDA`` (the ``lda`` package's collapsed Gibbs sampler) with the same
    settings, for comparisons. Creating one reconfigures the root logger (``basicConfig``);
    that is undone here, so its progress lines are not printed."""
    import lda  # optional (the data and dev extras): only tests and benchmarks compare with it

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return lda.LDA(
            n_topics=topics,
            n_iter=iterations,
            alpha=alpha,
            eta=beta,
            random_state=seed,
            refresh=iterations + 1,
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class LDA(Algorithm):
    name = "lda"
    deterministic = False
    TABLE = "word_topic"

    def __init__(self, corpus: Corpus, params: LDAParams) -> None:
        p = params
        check.whole("topics", p.topics, ge=2)
        check.positive("alpha", p.alpha)
        check.positive("beta", p.beta)
        self.corpus = corpus
        self.p = p
        self.words = np.ascontiguousarray(corpus.words, dtype=np.int32)
        self.docs = np.ascontiguousarray(corpus.docs, dtype=np.int32)
        V = corpus.n_words
        self.word_count = np.bincount(self.words, minlength=V)
        self.word_ptr = np.zeros(V + 1, dtype=np.int64)
        np.cumsum(self.word_count, out=self.word_ptr[1:])
        self.word_tokens = np.argsort(self.words, kind="stable").astype(np.int64)
        self.z = np.zeros(len(self.words), dtype=np.int32)
        self.ndt = np.zeros((corpus.n_docs, p.topics), dtype=np.int32)
        self._last = 0  # the iteration last run (keys the re-deal of a recovery)

    def start(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.p.seed, 0x1DA])
        self.z = rng.integers(0, self.p.topics, size=len(self.words), dtype=np.int32)
        nwt = np.zeros((self.corpus.n_words, self.p.topics), dtype=np.float32)
        _count(self.words, self.docs, self.z, nwt, self.ndt)
        self._last = 0
        return {self.TABLE: nwt}

    def step(self, tables: Tables, iteration: int) -> None:
        nwt = tables[self.TABLE]
        nt = nwt.sum(axis=0, dtype=np.float64)
        vbeta = self.corpus.n_words * self.p.beta
        key = sweep_key(self.p.seed, iteration, chain=self.chain_words())
        gibbs_sweep(
            self.words, self.docs, self.z, nwt, self.ndt, nt, self.p.alpha, self.p.beta, vbeta, key
        )
        self._last = iteration

    def loglikelihood(self, tables: Tables) -> float:
        """Joint log p(w, z) of the table and the workers' document-topic counts."""
        return float(joint_loglik(tables[self.TABLE], self.ndt, self.p.alpha, self.p.beta))

    def objective(self, tables: Tables) -> float:
        return -self.loglikelihood(tables) / len(self.words)

    # -- worker state and recovery ------------------------------------------------------------
    def aux_state(self) -> dict[str, np.ndarray]:
        return {"z": self.z, "doc_topic": self.ndt}

    def set_aux_state(self, aux: Mapping[str, np.ndarray]) -> None:
        self.z = np.array(aux["z"], dtype=np.int32, copy=True)
        self.ndt = np.array(aux["doc_topic"], dtype=np.int32, copy=True)

    def skip_to(self, iteration: int, aux: Mapping[str, np.ndarray]) -> None:
        self.set_aux_state(aux)
        self._last = iteration

    def rebuilds(self, iteration: int) -> tuple[str, ...]:
        return (self.TABLE,)  # the counts of the topic assignments z, which workers hold

    def counts_of(self, z: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """The word-topic counts that the topic assignments ``z`` (of every token) imply: of
        the words ``ids`` (rows in that order), or of every word. The one place they are
        counted again - a rebuild, and a worker replaced from its snapshot, use it."""
        K = self.p.topics
        if ids is None:
            flat = self.words.astype(np.int64) * K + z
            return np.bincount(flat, minlength=self.corpus.n_words * K).reshape(-1, K)
        out = np.empty((len(ids), K), np.int64)
        for j, w in enumerate(np.asarray(ids, dtype=np.int64)):
            out[j] = np.bincount(
                z[self.word_tokens[self.word_ptr[w] : self.word_ptr[w + 1]]], minlength=K
            )
        return out

    def rebuild(self, tables: Tables, rows: Mapping[str, np.ndarray], iteration: int) -> None:
        """A word's topic counts, counted again from its tokens' topics: exact."""
        ids = np.asarray(rows[self.TABLE], dtype=np.int64)
        tables[self.TABLE][ids] = self.counts_of(self.z, ids)

    def after_restore(self, tables: Tables, rows: Mapping[str, np.ndarray | None]) -> None:
        if self.TABLE not in rows:
            return
        nwt = tables[self.TABLE]
        ids = rows[self.TABLE]
        ids = np.arange(nwt.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
        values = nwt[ids].astype(np.float64)
        bad = (
            ~np.isfinite(values).all(axis=1)
            | (values < 0).any(axis=1)
            | (values != np.round(values)).any(axis=1)
            | (values.sum(axis=1) != self.word_count[ids])
        )
        if bad.any():
            raise StoreError(
                f"restored {self.TABLE} rows {ids[bad][:5].tolist()} are not topic counts of "
                "their words (a row must hold whole counts summing to the word's corpus count)"
            )
        key = stream_key(self.p.seed, self._last, 0x5EDEA1, *self.chain_words())
        _redeal(ids, self.word_ptr, self.word_tokens, self.z, self.docs, nwt, self.ndt, key)

    # -- evaluation ---------------------------------------------------------------------------
    def doc_topic(self) -> np.ndarray:
        theta = self.ndt + self.p.alpha
        return theta / theta.sum(axis=1, keepdims=True)

    def topic_word(self, tables: Tables) -> np.ndarray:
        phi = tables[self.TABLE].T.astype(np.float64) + self.p.beta
        return phi / phi.sum(axis=1, keepdims=True)

    def perplexity(self, tables: Tables) -> float:
        """Training perplexity from the point estimates of theta and phi."""
        return perplexity(self.corpus.counts(), self.doc_topic(), self.topic_word(tables))

    def metrics(self, tables: Tables) -> dict[str, float]:
        return {"loglikelihood": self.loglikelihood(tables), "perplexity": self.perplexity(tables)}

    def params(self) -> dict:
        return {
            "optimizer": "gibbs",
            "iteration": "one sweep over every token",
            "topics": self.p.topics,
            "alpha": self.p.alpha,
            "beta": self.p.beta,
            "objective": "-log p(w, z) / tokens",
            "rows": self.corpus.n_words,
            "width": self.p.topics,
            "dataset": self.corpus.name,
            "documents": self.corpus.n_docs,
            "tokens": len(self.words),
        }
