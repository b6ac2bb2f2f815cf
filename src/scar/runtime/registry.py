"""Which worker/server split runs each model the runtime trains (the runtime's counterpart of
:mod:`scar.algorithms.registry`): MLR and sparse LR (:mod:`.split`), MF-ALS and LDA
(:mod:`.mf_lda`, which loads their compiled kernels)."""

from __future__ import annotations

from ..algorithms.base import Algorithm
from ..errors import ConfigError
from .mf_lda import LDASplit, MFSplit
from .split import MLRSplit, SparseLRSplit, Split

SPLITS: dict[str, type[Split]] = {
    "mlr": MLRSplit,
    "sparse-lr": SparseLRSplit,
    "mf": MFSplit,
    "lda": LDASplit,
}


def split_of(model: str, algorithm: Algorithm) -> Split:
    """The split of ``algorithm``, an instance of ``model``."""
    if model not in SPLITS:
        raise ConfigError(f"model {model!r} has no distributed split; allowed: {', '.join(SPLITS)}")
    return SPLITS[model](algorithm)
