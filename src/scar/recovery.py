"""Failures (loss of shards) and the two ways back: full rollback and partial recovery.

* ``fail`` destroys the live rows of the lost shards (they become NaN, so any use of a lost
  value shows up instead of silently passing).
* ``full`` (traditional): every row of every table is reset to its saved value, and training
  restarts from the iteration of the newest checkpoint; iterations after it are done again.
* ``partial`` (SCAR): only the lost rows are read back from the store; every other row, the
  iteration counter and worker-side state carry on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import validation as check
from .errors import StoreError
from .state import State
from .store.base import CheckpointStore

RECOVERY_MODES = ("full", "partial")
# Beyond the checkpoint: lost rows that are a function of the surviving state are recomputed
# (``Algorithm.rebuild``), the others restored as in partial recovery. Offered by the
# experiments and the runtime for the models that have it; not by the Checkpointer, which
# knows no algorithm.
REBUILD = "rebuild"


@dataclass
class Recovery:
    """What a recovery did."""

    mode: str
    lost_shards: list[int]
    rows_restored: dict[str, int]
    bytes_restored: int
    restart_iteration: int | None  # full: the iteration training resumes from; partial: None
    aux: dict[str, np.ndarray] = field(default_factory=dict)  # full: worker state to reinstate


def check_mode(mode: str) -> str:
    return check.one_of("mode", mode, RECOVERY_MODES)


def check_shards(state: State, shards: Iterable[int]) -> list[int]:
    """The lost shards' ids, sorted and each once; each must be one of the state's shards."""
    shards = sorted({int(s) for s in shards})
    if any(not 0 <= s < state.n_shards for s in shards):
        check.fail("lost_shards", f"shard ids in 0..{state.n_shards - 1}", shards)
    return shards


def lost_rows(state: State, shards: list[int]) -> dict[str, np.ndarray | None]:
    """The row ids of ``shards`` per table; None (every row, read as whole chunks without a
    list of ids) when they are all the shards."""
    if len(shards) == state.n_shards:
        return {name: None for name in state}
    return state.rows_of(shards)


def fail(state: State, lost_shards: Iterable[int]) -> dict[str, np.ndarray]:
    """Destroy the rows of ``lost_shards`` in every table; return the lost row ids per table."""
    lost = state.rows_of(check_shards(state, lost_shards))
    for name, rows in lost.items():
        state[name][rows] = np.nan
    return lost


def _span(table: np.ndarray, ids: np.ndarray | None) -> np.ndarray | None:
    """The rows ``ids`` of ``table`` as a view the store can read into, when they are one
    contiguous run (a lost shard of the range layout): the rows are lost anyway, so they are
    filled in place instead of through a second copy. None otherwise (every row - a full
    restore keeps the live state until it has read the whole checkpoint - or scattered ids)."""
    if ids is None or not len(ids) or not table.flags.c_contiguous:
        return None
    lo, hi = int(ids[0]), int(ids[-1]) + 1
    if hi - lo != len(ids) or not (np.diff(ids) == 1).all():
        return None
    return table[lo:hi]


def restore_rows(
    state: State, store: CheckpointStore, rows: Mapping[str, np.ndarray | None]
) -> tuple[dict[str, int], int]:
    """Read the latest saved value of ``rows`` (None = all) back into ``state``."""
    counts, nbytes = {}, 0
    for name, ids in rows.items():
        never = store.saved_iteration(name, ids) < 0
        if never.any():
            raise StoreError(
                f"table {name!r}: {int(never.sum())} rows were never checkpointed, cannot restore"
            )
        span = _span(state[name], ids)
        values = store.read_rows(name, ids, out=span)
        if ids is None:
            np.copyto(state[name], values)
        elif span is None:
            state[name][ids] = values
        counts[name] = int(values.shape[0])
        nbytes += values.nbytes
    return counts, nbytes


def recover(
    state: State, store: CheckpointStore, lost_shards: Iterable[int], mode: str
) -> Recovery:
    """Bring ``state`` back after ``lost_shards`` were lost (see the module docstring)."""
    check_mode(mode)
    shards = check_shards(state, lost_shards)
    if mode == "partial":
        counts, nbytes = restore_rows(state, store, lost_rows(state, shards))
        return Recovery(mode, shards, counts, nbytes, None)
    latest = store.latest()
    if latest is None:
        raise StoreError("no checkpoint to roll back to")
    counts, nbytes = restore_rows(state, store, {name: None for name in state})
    _, aux = store.read_aux()
    return Recovery(mode, shards, counts, nbytes, latest.iteration, aux)
