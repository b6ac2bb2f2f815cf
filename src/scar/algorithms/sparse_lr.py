"""Sparse (binary) logistic regression on hashed categorical features, and a synthetic
Criteo-like data generator.

Criteo's click logs are 26 categorical fields (plus 13 counts) per example, hashed into a
large weight vector: every example activates one bucket per field, the values of a field
follow a heavy-tailed (Zipf-like) law, and the label is a click with a low base rate. The
generator below reproduces that shape at any size, deterministically from a seed:

* field ``f`` has ``vocab`` values; value ranks are drawn from a Zipf law of exponent ``zipf``
  and hashed, with the field id, into ``2**hash_bits`` buckets (collisions included);
* a hidden "true" weight per bucket (normal, scale ``signal``) and a bias of ``base_logit``
  give each example its click probability; the label is a Bernoulli draw.

The server table ``weights`` has one row per bucket plus a last row for the bias (width 1).
Objective: mean log-loss + (l2 / 2) * ||w||^2. One iteration is a minibatch SGD step: the batch
of iteration k comes from a per-epoch permutation keyed by (seed, epoch) (common random
numbers); only the touched rows are updated (lazy L2, as sparse parameter servers do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation as check
from .base import Algorithm, Tables


@dataclass(frozen=True)
class CriteoSynthConfig:
    examples: int = 100_000
    fields: int = 26
    hash_bits: int = 18
    vocab: int = 10_000
    zipf: float = 1.1
    signal: float = 0.5
    base_logit: float = -1.5
    seed: int = 0

    def validate(self, flags: bool = False) -> None:
        """Raise :class:`ConfigError` naming the first invalid size: as the keyword, or as the
        command-line flag with ``flags``."""
        name = check.namer(flags)
        for size in ("examples", "fields", "vocab"):
            check.whole(name(size), getattr(self, size), ge=1)
        check.whole(name("hash_bits"), self.hash_bits, ge=4, le=30)


@dataclass(frozen=True)
class HashedData:
    """``idx[i, f]``: the bucket example ``i`` activates in field ``f``; ``y``: 0/1 labels."""

    name: str
    idx: np.ndarray  # (n, fields) int64 bucket ids
    y: np.ndarray  # (n,) float32
    n_buckets: int


def criteo_synth(cfg: CriteoSynthConfig) -> HashedData:
    """Generate a Criteo-like hashed dataset (see the module docstring)."""
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, 0xC1])
    n, F, D = cfg.examples, cfg.fields, 1 << cfg.hash_bits
    # Zipf ranks truncated to the vocabulary, by inverse-CDF sampling of a discrete power law.
    weights = 1.0 / np.arange(1, cfg.vocab + 1) ** cfg.zipf
    cdf = np.cumsum(weights / weights.sum())
    ranks = np.minimum(np.searchsorted(cdf, rng.random((n, F))), cfg.vocab - 1).astype(np.uint64)
    field = np.arange(F, dtype=np.uint64)[None, :]
    idx = (_hash(ranks * np.uint64(1_000_003) + field) % np.uint64(D)).astype(np.int64)
    truth = rng.normal(0.0, cfg.signal, D).astype(np.float32)
    logit = cfg.base_logit + truth[idx].sum(axis=1) / np.sqrt(F)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return HashedData("criteo-synth", idx, y, D)


def _hash(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class SparseLRParams:
    lr: float = 0.5
    l2: float = 1e-6
    batch_size: int = 4096
    seed: int = 0


def batch_of(n: int, batch_size: int, seed: int, iteration: int) -> np.ndarray:
    """Example ids of ``iteration``'s minibatch: a pure function of the iteration."""
    b = min(batch_size, n)
    epoch, pos = divmod(iteration - 1, n // b)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(perm[pos * b : (pos + 1) * b])


def logloss_gradient(
    idx: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Sum over the examples of the log-loss gradient: (touched rows, gradient sums, loss sum).
    The bias is the table's last row; every example touches it."""
    bias_row = w.shape[0] - 1
    z = _logits(idx, w)
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    r = (p - y).astype(np.float32)
    rows, inverse = np.unique(idx.ravel(), return_inverse=True)
    g = np.bincount(inverse, weights=np.repeat(r, idx.shape[1]), minlength=rows.size)
    rows = np.append(rows, bias_row)
    g = np.append(g, r.sum(dtype=np.float64)).astype(np.float32)
    return rows, g.reshape(-1, 1), loss


def _logits(idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w[idx, 0].sum(axis=1) + w[w.shape[0] - 1, 0]


def mean_logloss(idx: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    z = _logits(idx, w).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def sgd_apply(
    w: np.ndarray, rows: np.ndarray, gsum: np.ndarray, lr: float, scale: float, l2: float
):
    """w[rows] -= lr * (gsum * scale + l2 * w[rows]): the server side of one step."""
    t = w.dtype.type
    g = gsum * t(scale)
    g += t(l2) * w[rows]
    w[rows] -= t(lr) * g


class SparseLR(Algorithm):
    name = "sparse-lr"
    TABLE = "weights"

    def __init__(self, data: HashedData, params: SparseLRParams) -> None:
        check.positive("lr", params.lr)
        check.non_negative("l2", params.l2)
        check.whole("batch_size", params.batch_size, ge=1)
        self.data, self.p = data, params

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.n_buckets + 1, 1

    def start(self) -> dict[str, np.ndarray]:
        return {self.TABLE: np.zeros(self.shape, np.float32)}

    def batch(self, iteration: int) -> np.ndarray:
        return batch_of(len(self.data.y), self.p.batch_size, self.p.seed, iteration)

    def step(self, tables: Tables, iteration: int) -> None:
        b = self.batch(iteration)
        rows, g, _ = logloss_gradient(self.data.idx[b], self.data.y[b], tables[self.TABLE])
        sgd_apply(tables[self.TABLE], rows, g, self.p.lr, 1.0 / len(b), self.p.l2)

    def objective(self, tables: Tables) -> float:
        w = tables[self.TABLE]
        reg = 0.5 * self.p.l2 * float(np.sum(np.square(w, dtype=np.float64)))
        return mean_logloss(self.data.idx, self.data.y, w) + reg

    def params(self) -> dict:
        return {
            "lr": self.p.lr,
            "l2": self.p.l2,
            "batch_size": self.p.batch_size,
            "rows": self.shape[0],
            "dataset": self.data.name,
            "examples": int(len(self.data.y)),
        }
