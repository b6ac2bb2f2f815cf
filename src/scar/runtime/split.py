"""The worker/server split of an algorithm: what a parameter-server runtime moves around.

A split turns one iteration of an :class:`~scar.algorithms.base.Algorithm` into

* ``WorkerPart.update(tables, iteration, args)``: a worker, holding one partition of the data,
  reads the pulled tables and returns an :class:`Update` per table (row ids or None = every
  row, values, op ``"add"`` or ``"set"``);
* ``ServerRule.apply(live, rows, total, args)``: a shard applies the sum over workers of the
  ``"add"`` updates of its rows (``"set"`` rows are overwritten as pushed).

Per-iteration arguments that are pure functions of the iteration (the minibatch, the step
size) are computed once by the coordinator (``worker_args``, ``server_args``) so that workers
and shards hold no schedule of their own: rewinding the iteration counter rewinds them.

The same split drives the local runtime (in-process shards) and the Ray runtime, so both give
the same trajectory; with one worker the MLR split reproduces ``MLR.step`` operation by
operation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import validation as check
from ..algorithms.base import Algorithm, Tables
from ..algorithms.mlr import cross_entropy_gradient
from ..algorithms.sparse_lr import SparseLR, logloss_gradient, sgd_apply
from ..state import Sharding
from ..validation import DEFAULT_SHARDING

OPS = ("add", "set")


@dataclass
class Update:
    """Rows of one table pushed by a worker: ``rows`` are sorted unique ids (None: all rows)."""

    rows: np.ndarray | None
    values: np.ndarray
    op: str = "add"


class Layout:
    """Where every row of every table lives: one :class:`Sharding` per table."""

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, int]],
        n_shards: int,
        scheme: str = DEFAULT_SHARDING,
        dtypes: Mapping[str, Any] | None = None,
    ):
        self.shapes = dict(shapes)
        self.dtypes = {n: np.dtype((dtypes or {}).get(n, np.float32)) for n in self.shapes}
        self.n_shards = n_shards
        self.shardings = {n: Sharding(s[0], n_shards, scheme) for n, s in self.shapes.items()}
        self._rows = [
            {n: sh.rows_of(k) for n, sh in self.shardings.items()} for k in range(n_shards)
        ]

    def rows(self, shard: int) -> dict[str, np.ndarray]:
        """Global row ids (sorted) of ``shard``, per table."""
        return self._rows[shard]

    def assemble(self, pulls: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Full tables from every shard's rows (``pulls[k]``: shard k's rows, in its order)."""
        out = {}
        for name, (n, width) in self.shapes.items():
            first = pulls[0][name]
            table = np.empty((n, width), first.dtype)
            for k, pulled in enumerate(pulls):
                table[self._rows[k][name]] = pulled[name]
            out[name] = table
        return out

    def scatter(self, tables: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each shard's rows of full ``tables`` (copies)."""
        return [{n: tables[n][r].copy() for n, r in rows.items()} for rows in self._rows]

    def split(self, updates: Mapping[str, Update]) -> list[dict[str, Update]]:
        """Cut each table's update into per-shard updates with shard-local row positions."""
        out: list[dict[str, Update]] = [{} for _ in range(self.n_shards)]
        for name, u in updates.items():
            if u.op not in OPS:
                raise ValueError(f"unknown update op {u.op!r}")
            if u.rows is None:
                for k in range(self.n_shards):
                    out[k][name] = Update(None, u.values[self._rows[k][name]], u.op)
                continue
            owner = self.shardings[name].shard_of(u.rows)
            for k in range(self.n_shards):
                sel = owner == k
                local = np.searchsorted(self._rows[k][name], u.rows[sel])
                out[k][name] = Update(local, u.values[sel], u.op)
        return out


def combine(n_rows: int, updates: Sequence[Update]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Sum the ``"add"`` updates of one table on one shard, in worker order.

    Returns (rows or None = all, summed values), or (None, None) when nothing was pushed."""
    adds = [u for u in updates if u.op == "add"]
    if not adds:
        return None, None
    if all(u.rows is None for u in adds):
        total = adds[0].values.copy()
        for u in adds[1:]:
            total += u.values
        return None, total
    width = adds[0].values.shape[1]
    buf = np.zeros((n_rows, width), adds[0].values.dtype)
    touched = np.zeros(n_rows, bool)
    for u in adds:
        if u.rows is None:
            buf += u.values
            touched[:] = True
        else:
            buf[u.rows] += u.values
            touched[u.rows] = True
    if touched.all():
        return None, buf
    rows = np.flatnonzero(touched)
    return rows, buf[rows]


class WorkerPart(ABC):
    """One worker's partition of the data and its half of the iteration. A part may hold
    worker-side state (LDA: topic assignments, document-topic counts): ``state`` returns a
    copy of it, ``set_state`` reinstates one (full rollback, re-deal after a restore)."""

    @abstractmethod
    def update(self, tables: Tables, iteration: int, args: Any) -> dict[str, Update]: ...

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Reinstate worker-side arrays returned by :meth:`state`."""


class ServerRule(ABC):
    """A shard's half of the iteration: apply the summed pushes to its live rows."""

    @abstractmethod
    def apply(
        self, name: str, live: np.ndarray, rows: np.ndarray | None, total: np.ndarray, args: Any
    ) -> None: ...


class AddRule(ServerRule):
    """``w[rows] += sum``: counts (LDA) and other additive deltas."""

    def apply(self, name, live, rows, total, args):
        if rows is None:
            live += total
        else:
            live[rows] += total


class DescentRule(ServerRule):
    """``w[rows] -= lr * (sum * scale + l2 * w[rows])``: gradient descent on summed gradients."""

    def apply(self, name, live, rows, total, args):
        sgd_apply(live, slice(None) if rows is None else rows, total, **args)


class Split(ABC):
    """Driver-side description of an algorithm's worker/server split."""

    rule: ServerRule
    #: True when workers hold state the objective and recovery need (see WorkerPart.state).
    worker_state: bool = False

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm

    def initial_tables(self) -> dict[str, np.ndarray]:
        return self.algorithm.start()

    @abstractmethod
    def parts(self, n_workers: int) -> list[WorkerPart]: ...

    @abstractmethod
    def worker_args(self, iteration: int, n_workers: int) -> list[Any]: ...

    @abstractmethod
    def server_args(self, iteration: int) -> dict[str, Any]: ...

    def objective(self, tables: Tables, states: Sequence[Mapping[str, np.ndarray]] = ()) -> float:
        """The objective of the tables (and of the workers' ``states``, in worker order)."""
        return self.algorithm.objective(tables)

    def after_restore(
        self,
        tables: Tables,
        rows: Mapping[str, np.ndarray | None],
        states: Sequence[Mapping[str, np.ndarray]],
        iteration: int,
    ) -> list[dict[str, np.ndarray]] | None:
        """Worker states made consistent with restored ``rows`` (None = all) after a failure
        after ``iteration``; None when nothing changes (no worker state)."""
        return None

    @property
    def n_examples(self) -> int:
        raise NotImplementedError

    def _ranges(self, n_workers: int) -> list[tuple[int, int]]:
        check.whole("workers", n_workers, le=self.n_examples, note="(the examples)")
        b = np.linspace(0, self.n_examples, n_workers + 1).round().astype(np.int64)
        return [(int(b[i]), int(b[i + 1])) for i in range(n_workers)]

    def _local_batches(self, batch: np.ndarray | None, n_workers: int) -> list[Any]:
        if batch is None:
            return [None] * n_workers
        return [batch[(batch >= lo) & (batch < hi)] - lo for lo, hi in self._ranges(n_workers)]


# -- MLR --------------------------------------------------------------------------------------
class MLRPart(WorkerPart):
    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X, self.Y = X, Y

    def update(self, tables, iteration, args):
        X, Y = (self.X, self.Y) if args is None else (self.X[args], self.Y[args])
        return {"weights": Update(None, cross_entropy_gradient(X, Y, X @ tables["weights"]))}


class MLRSplit(Split):
    """Data-parallel MLR: workers sum the cross-entropy gradient over their examples; shards
    scale it by 1/batch, add the L2 term and step, exactly as ``MLR.step``."""

    rule = DescentRule()

    @property
    def n_examples(self) -> int:
        return int(self.algorithm.X.shape[0])

    def parts(self, n_workers):
        a = self.algorithm
        return [MLRPart(a.X[lo:hi].copy(), a.Y[lo:hi].copy()) for lo, hi in self._ranges(n_workers)]

    def worker_args(self, iteration, n_workers):
        return self._local_batches(self.algorithm.batch(iteration), n_workers)

    def server_args(self, iteration):
        a = self.algorithm
        batch = a.batch(iteration)
        n = self.n_examples if batch is None else len(batch)
        return {"lr": a.learning_rate(iteration), "scale": 1.0 / n, "l2": a.p.l2}


# -- sparse LR --------------------------------------------------------------------------------
class SparseLRPart(WorkerPart):
    def __init__(self, idx: np.ndarray, y: np.ndarray) -> None:
        self.idx, self.y = idx, y

    def update(self, tables, iteration, args):
        w = tables["weights"]
        if len(args) == 0:
            return {"weights": Update(np.empty(0, np.int64), np.empty((0, 1), w.dtype))}
        rows, g, _ = logloss_gradient(self.idx[args], self.y[args], w)
        return {"weights": Update(rows, g)}


class SparseLRSplit(Split):
    """Data-parallel sparse LR: workers push the gradient sums of the rows their examples
    touch; shards step those rows only."""

    rule = DescentRule()
    algorithm: SparseLR

    @property
    def n_examples(self) -> int:
        return int(len(self.algorithm.data.y))

    def parts(self, n_workers):
        d = self.algorithm.data
        return [
            SparseLRPart(d.idx[lo:hi].copy(), d.y[lo:hi].copy())
            for lo, hi in self._ranges(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        return self._local_batches(self.algorithm.batch(iteration), n_workers)

    def server_args(self, iteration):
        a = self.algorithm
        return {"lr": a.p.lr, "scale": 1.0 / len(a.batch(iteration)), "l2": a.p.l2}
