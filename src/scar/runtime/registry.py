"""Which worker/server split runs each model the runtime trains (the runtime's counterpart of
:mod:`scar.algorithms.registry`): MLR and sparse LR (:mod:`.split`), MF-ALS and LDA
(:mod:`.mf_lda`, which loads their compiled kernels), the DLRM (:mod:`.dlrm`, torch)."""

from __future__ import annotations

from .. import validation as check
from ..algorithms.base import Algorithm
from .dlrm import DLRMSplit
from .mf_lda import LDASplit, MFSplit
from .split import MLRSplit, SparseLRSplit, Split

SPLITS: dict[str, type[Split]] = {
    "mlr": MLRSplit,
    "sparse-lr": SparseLRSplit,
    "mf": MFSplit,
    "lda": LDASplit,
    "dlrm": DLRMSplit,
}


def split_of(model: str, algorithm: Algorithm) -> Split:
    """The split of ``algorithm``, an instance of ``model``."""
    check.one_of("model", model, SPLITS, note="(a model with a distributed split)")
    return SPLITS[model](algorithm)
