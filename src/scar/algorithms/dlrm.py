"""A DLRM-style recommender (:class:`scar.algorithms.nets.DLRM`) on click data, trained by
minibatches with Adam or Adagrad: binary cross-entropy of the click over the first
``examples`` examples.

Every categorical field is an embedding table of its own (rows = the values the training
examples use; a multi-valued field such as a movie's genres is a mean ``EmbeddingBag``); the
bottom MLP maps the dense features to the embedding width, the top MLP reads the pairwise dot
products of all those vectors (and the bottom MLP's output) and gives the click's logit. Eight
shards split every table's rows, the embeddings' and the MLPs' alike.

Data (:func:`clicks`):

* ``movielens-100k``: :func:`scar.datasets.clicks.load_movielens_clicks` (user and item
  fields, genres as a bag, age / gender / release year dense; rating >= 4 is a click);
* ``criteo-synth``: :func:`criteo_clicks` of :data:`CRITEO`, the synthetic Criteo-like log of
  :func:`scar.algorithms.sparse_lr.criteo_synth` at a size where a step takes a few ms:
  200,000 examples (the default run of 300 steps of 256 stays in the first epoch: later
  epochs memorise), 8 hashed fields of 2^10 buckets, each field its own table (a field's
  buckets that occur, renumbered), signal 1.0 (twice sparse LR's default: more of the
  loss for the embeddings to learn), plus 4 dense features drawn from a separate random stream given the
  click (so ``criteo_synth``'s own output is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .. import validation as check
from ..datasets.clicks import Clicks, load_movielens_clicks
from ..errors import DatasetError
from .nets import DLRM
from .sparse_lr import CriteoSynthConfig, criteo_synth
from .torch_model import TorchModel

# criteo-synth for the DLRM (see the module docstring)
CRITEO = CriteoSynthConfig(examples=200_000, fields=8, hash_bits=10, vocab=10_000, signal=1.0)
CRITEO_DENSE = 4  # dense features
# how far each dense feature's mean moves with the click (standard deviations; the last is noise)
DENSE_SHIFT = (1.0, 0.5, 0.25, 0.0)


@dataclass(frozen=True)
class DLRMParams:
    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 256
    examples: int = 200_000  # the first examples of the set (every one of both sets)
    eval_size: int = 2_000
    dim: int = 16  # embedding width
    seed: int = 0


def criteo_clicks(cfg: CriteoSynthConfig = CRITEO, dense: int = CRITEO_DENSE) -> Clicks:
    """``criteo_synth(cfg)`` as click data: field ``f``'s table has one row per bucket that
    occurs in the field (in bucket order); ``dense`` features in [0, 1], each a logistic of a
    normal variable whose mean moves by ``DENSE_SHIFT[j]`` with the click (an independent
    stream keyed by (seed, 0xDE))."""
    check.whole("dense", dense, ge=0)
    data = criteo_synth(cfg)
    cols, rows = [], []
    for f in range(data.idx.shape[1]):
        used, inverse = np.unique(data.idx[:, f], return_inverse=True)
        cols.append(inverse.reshape(-1).astype(np.int64))
        rows.append(len(used))
    rng = np.random.default_rng([cfg.seed, 0xDE])
    shift = np.array([DENSE_SHIFT[j % len(DENSE_SHIFT)] for j in range(dense)])
    z = rng.standard_normal((len(data.y), dense)) + (data.y[:, None] - 0.5) * shift
    return Clicks(
        data.name,
        (1.0 / (1.0 + np.exp(-z))).astype(np.float32),
        np.stack(cols, axis=1),
        tuple(rows),
        data.y,
        fields=tuple(f"c{f}" for f in range(len(rows))),
        dense_names=tuple(f"i{j}" for j in range(dense)),
    )


@lru_cache(maxsize=2)
def clicks(dataset: str) -> Clicks:
    """The click data of a data set the DLRM runs on (cached per process)."""
    if dataset == "criteo-synth":
        return criteo_clicks()
    if dataset == "movielens-100k":
        return load_movielens_clicks()
    raise DatasetError(f"no click data for dataset {dataset!r}")


class DLRMModel(TorchModel):
    name = "dlrm"

    def __init__(self, data: Clicks, params: DLRMParams) -> None:
        check.whole("examples", params.examples, ge=1)
        check.whole("dim", params.dim, ge=1)
        self.data = data.head(params.examples)
        self.p = params
        d = self.data
        self.dense = torch.from_numpy(d.dense) if d.dense.shape[1] else None
        self.ids = torch.from_numpy(d.ids)
        self.y = torch.from_numpy(d.y)
        super().__init__(
            params.optimizer, params.lr, params.batch_size, len(d), params.eval_size, params.seed
        )

    def build(self) -> torch.nn.Module:
        """The network; embeddings drawn uniform in +-sqrt(1 / rows) as the DLRM reference
        code draws them (torch's default N(0, 1) starts the dot products at variance ``dim``:
        MovieLens then needs four times the steps to the same loss)."""
        d = self.data
        net = DLRM(d.field_rows, d.dense.shape[1], self.p.dim, bags=[b.rows for b in d.bags])
        with torch.no_grad():
            for table in [*net.emb, *net.bags]:
                bound = table.weight.shape[0] ** -0.5
                table.weight.uniform_(-bound, bound)
        return net

    def logits(self, ids: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(ids)
        bags = [tuple(torch.from_numpy(a) for a in b.select(ids)) for b in self.data.bags]
        dense = self.dense[idx] if self.dense is not None else None
        return self.net(dense, self.ids[idx], bags)

    def loss(self, ids: np.ndarray) -> torch.Tensor:
        y = self.y[torch.from_numpy(ids)]
        return torch.nn.functional.binary_cross_entropy_with_logits(self.logits(ids), y)

    def metrics(self, tables) -> dict[str, float]:
        with self._bound(tables), torch.no_grad():
            z = self.logits(self.eval_ids).numpy().astype(np.float64)
        y = self.data.y[self.eval_ids]
        return {"auc": auc(z, y), "accuracy": float(np.mean((z > 0) == (y > 0.5)))}

    def params(self) -> dict:
        d = self.data
        names = d.fields or tuple(f"f{f}" for f in range(len(d.field_rows)))
        return {
            **super().params(),
            "dim": self.p.dim,
            "dataset": d.name,
            "fields": dict(zip(names, d.field_rows, strict=True))
            | {b.name: b.rows for b in d.bags},
            "dense": int(d.dense.shape[1]),
            "click_rate": round(d.click_rate, 4),
        }


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half; NaN without both classes)."""
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average 1-based rank of ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
