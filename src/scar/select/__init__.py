"""Hot-path kernels of prioritized checkpoints: per-row change norms and exact top-k rows.

``row_change_norms(live, saved)`` is the L2 norm of ``live[i] - saved[i]`` for every row, in one
parallel numba pass over both matrices (no full-size temporary; squares summed in float64; the
result is float32 only if both inputs are).  ``select_top_changed`` = ``top_k`` of those norms.

A parameter-server shard knows which rows its updates touched: ``take_top_changed(mask,
live, saved, k)`` gives the same rows as ``select_top_changed`` reading only the rows set in a
dirty mask (one compiled pass for one-column tables), and ``gather_saving`` snapshots the
chosen rows and records them as saved in one pass.

``top_k(scores, k)`` returns the int64 ids of the ``k`` rows with the largest scores, sorted
ascending, ties to the smallest row ids, NaN counted as ``+inf``.

Modules: ``topk`` (``top_k``, its radix-select kernels and ``warm_up``), ``changed`` (change
norms, the selection from a dirty mask, the snapshot, ``warm_up_rows``), ``common`` (numba's
options, thread control - ``single_threaded`` - and input checks).  Importing this package
imports numba: callers that may never select rows import it on first use.
"""

from .changed import (
    gather_saving,
    row_change_norms,
    select_top_changed,
    select_top_changed_among,
    take_set,
    take_top_changed,
    top_k_sparse,
    warm_up_rows,
)
from .common import single_threaded
from .topk import top_k, warm_up

__all__ = [
    "gather_saving",
    "row_change_norms",
    "select_top_changed",
    "select_top_changed_among",
    "single_threaded",
    "take_set",
    "take_top_changed",
    "top_k",
    "top_k_sparse",
    "warm_up",
    "warm_up_rows",
]
