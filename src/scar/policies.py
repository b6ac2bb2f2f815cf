"""Checkpoint policies: which rows to save, and when.

``full(C)`` saves every row every ``C`` iterations. The partial policies save a fraction ``r`` of
the rows every ``m = max(1, round(r*C))`` iterations, choosing the rows

* ``priority``: with the largest L2 change since each row was last saved (ties by row id);
* ``round-robin``: cyclically, continuing where the previous checkpoint stopped;
* ``random``: uniformly without replacement.

``TrackedPriority`` is the priority policy of a parameter-server shard: the same rows, read
only where its pushes touched.

Equal cost: every policy writes ``n / C`` of a table's ``n`` rows per iteration. A partial policy
saves, at iteration ``i``, ``floor(n*i/C) - floor(n*(i-m)/C)`` rows: about ``n*m/C`` (``r*n``
when ``r*C`` is a whole number, as in the paper), with the fractions carried over so that after
any number of iterations it has written the same rows as ``full(C)`` to within one checkpoint.
Rounding each checkpoint up instead (``ceil(r*n)``) overspends by up to one row per checkpoint,
and when ``r*C`` is not whole (``C = 10``, ``r = 1/8``: ``m = 1``) sizing by ``r`` would write
25 % more than ``full(C)``.

A policy object only decides; :class:`scar.checkpoint.Checkpointer` keeps the last-saved copy the
priority policy compares against, and the store writes the rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from . import validation as check

POLICIES = ("full", "priority", "round-robin", "random")


class Policy(ABC):
    """Base class: a schedule (``interval``) and a row choice (``select``)."""

    name: str = ""
    needs_saved_copy: bool = False

    def __init__(self, period: int) -> None:
        self.period = int(check.whole("period", period, ge=1))

    @property
    def interval(self) -> int:
        """Iterations between two checkpoints."""
        return self.period

    def is_due(self, iteration: int) -> bool:
        return iteration > 0 and iteration % self.interval == 0

    def rows_per_checkpoint(self, n_rows: int, iteration: int) -> int:
        """Rows of an ``n_rows`` table saved by the checkpoint at ``iteration``."""
        return n_rows

    @abstractmethod
    def select(
        self, table: str, live: np.ndarray, saved: np.ndarray | None, iteration: int
    ) -> np.ndarray | None:
        """Row ids (sorted) to save from ``table`` now; ``None`` means every row."""

    def describe(self) -> str:
        return f"{self.name}(C={self.period})"


class FullPolicy(Policy):
    name = "full"

    def select(self, table, live, saved, iteration):
        return None


class _FractionPolicy(Policy):
    def __init__(self, period: int, fraction: float, seed: int = 0) -> None:
        super().__init__(period)
        self.fraction = float(check.fraction("fraction", fraction))
        self.seed = int(seed)

    @property
    def interval(self) -> int:
        return max(1, round(self.fraction * self.period))

    def rows_per_checkpoint(self, n_rows: int, iteration: int) -> int:
        due = (
            n_rows * iteration // self.period - n_rows * (iteration - self.interval) // self.period
        )
        return min(n_rows, due)

    def describe(self) -> str:
        return f"{self.name}(r={self.fraction:g}, C={self.period}, every {self.interval})"


class PriorityPolicy(_FractionPolicy):
    name = "priority"
    needs_saved_copy = True

    def select(self, table, live, saved, iteration):
        from .select import select_top_changed  # numba: imported on first use

        return select_top_changed(live, saved, self.rows_per_checkpoint(live.shape[0], iteration))


class TrackedPriority(PriorityPolicy):
    """The priority policy of a parameter-server shard, which knows which rows its pushes
    touched.

    It chooses the rows ``PriorityPolicy`` chooses (the ``k`` largest L2 changes since last
    saved, ties by row id, NaN first) - except that when fewer than ``k`` rows changed it saves
    only those, not rows equal to their saved copy: a sparse model's saves follow the rows its
    updates change, not the table's size - and reads only the rows that may have changed: a
    per-table mask, set for every row an update touches (``touch``) and, after each save, left
    set only for the rows whose change is still nonzero (not chosen, or NaN). Every row outside
    the mask has ``live == saved``, a change of 0, so ``take_top_changed`` gives the same rows
    as ``select_top_changed`` over the whole table (tests/test_select.py). Sparse LR touches
    a few % of its rows per iteration: a save reads ~``2 * interval`` iterations' worth of
    rows, not the table. Anything that rewrites rows behind the policy's back (a
    restore, a rollback) calls ``touch_all``.
    """

    def __init__(self, base: PriorityPolicy, n_rows: Mapping[str, int]) -> None:
        super().__init__(base.period, base.fraction, base.seed)
        self.dirty = {name: np.ones(n, bool) for name, n in n_rows.items()}

    def touch(self, table: str, rows: np.ndarray | None) -> None:
        self.dirty[table][slice(None) if rows is None else rows] = True

    def touch_all(self) -> None:
        for d in self.dirty.values():
            d[:] = True

    def select(self, table, live, saved, iteration):
        from .select import take_top_changed  # numba: imported on first use

        k = self.rows_per_checkpoint(live.shape[0], iteration)
        dirty = self.dirty[table]
        chosen, still = take_top_changed(dirty, live, saved, k, fill=False)  # mask cleared
        dirty[still] = True
        return chosen


class RoundRobinPolicy(_FractionPolicy):
    name = "round-robin"

    def __init__(self, period: int, fraction: float, seed: int = 0) -> None:
        super().__init__(period, fraction, seed)
        self._cursor: dict[str, int] = {}

    def select(self, table, live, saved, iteration):
        n = live.shape[0]
        k = self.rows_per_checkpoint(n, iteration)
        start = self._cursor.get(table, 0)
        self._cursor[table] = (start + k) % n if n else 0
        return np.sort((start + np.arange(k, dtype=np.int64)) % n)


class RandomPolicy(_FractionPolicy):
    name = "random"

    def __init__(self, period: int, fraction: float, seed: int = 0) -> None:
        super().__init__(period, fraction, seed)
        self._table_ids: dict[str, int] = {}

    def select(self, table, live, saved, iteration):
        n = live.shape[0]
        tid = self._table_ids.setdefault(table, len(self._table_ids))
        rng = np.random.default_rng([self.seed, tid, iteration])
        return np.sort(rng.choice(n, size=self.rows_per_checkpoint(n, iteration), replace=False))


def make_policy(name: str, period: int, fraction: float | None = None, seed: int = 0) -> Policy:
    """Build a policy by name. ``fraction`` is required for all but ``full``."""
    check.one_of("policy", name, POLICIES)
    if name == "full":
        return FullPolicy(period)
    if fraction is None:
        check.fail("fraction", "in (0, 1]", None, note=f"for policy {name!r}")
    classes = {"priority": PriorityPolicy, "round-robin": RoundRobinPolicy, "random": RandomPolicy}
    return classes[name](period, fraction, seed)
