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
from ..errors import ScarError
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
        # range sharding: shard k's rows are bounds[k]:bounds[k+1], a row's position is arithmetic
        self._starts = {n: sh.bounds for n, sh in self.shardings.items() if sh.scheme == "range"}

    def rows(self, shard: int) -> dict[str, np.ndarray]:
        """Global row ids (sorted) of ``shard``, per table."""
        return self._rows[shard]

    def assemble(self, pulls: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Full tables from every shard's rows (``pulls[k]``: shard k's rows, in its order)."""
        return {name: self._assemble_one(name, [p[name] for p in pulls]) for name in self.shapes}

    def _assemble_one(self, name: str, parts: Sequence[np.ndarray]) -> np.ndarray:
        n, width = self.shapes[name]
        table = np.empty((n, width), parts[0].dtype)
        for k, part in enumerate(parts):
            table[self._rows[k][name]] = part
        return table

    def scatter(self, tables: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each shard's rows of full ``tables`` (copies)."""
        return [{n: tables[n][r].copy() for n, r in rows.items()} for rows in self._rows]

    def _local(self, name: str, k: int, ids: np.ndarray) -> np.ndarray:
        """Positions in shard ``k``'s rows of table ``name`` of ``ids`` (sorted, all k's)."""
        starts = self._starts.get(name)
        if starts is not None:
            return ids - starts[k]
        return np.searchsorted(self._rows[k][name], ids)

    def locate(self, want: Mapping[str, np.ndarray | None]) -> list[dict[str, np.ndarray | None]]:
        """Per shard, the shard-local positions of the rows ``want`` names (per table: sorted
        unique global ids, or None for every row)."""
        out: list[dict[str, np.ndarray | None]] = [{} for _ in range(self.n_shards)]
        for name, ids in want.items():
            if ids is None:
                for k in range(self.n_shards):
                    out[k][name] = None
                continue
            owner = self.shardings[name].shard_of(ids)
            for k in range(self.n_shards):
                out[k][name] = self._local(name, k, ids[owner == k])
        return out

    def gather(
        self, want: Mapping[str, np.ndarray | None], pulls: Sequence[Mapping[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The rows ``want`` named, in its order, from each shard's answer to ``locate``."""
        out = {}
        for name, ids in want.items():
            if ids is None:
                out[name] = self._assemble_one(name, [p[name] for p in pulls])
                continue
            owner = self.shardings[name].shard_of(ids)
            values = np.empty((len(ids), self.shapes[name][1]), self.dtypes[name])
            for k, pulled in enumerate(pulls):
                values[owner == k] = pulled[name]
            out[name] = values
        return out

    def check_request(self, want: Mapping[str, np.ndarray | None] | None) -> dict:
        """A worker's request (``WorkerPart.rows``) as sorted unique int64 ids per table; a
        table it does not know or ids out of range are an error naming the table."""
        if want is None:
            return {name: None for name in self.shapes}
        out = {}
        for name, ids in want.items():
            if name not in self.shapes:
                raise ScarError(f"rows(): no table {name!r} (tables: {', '.join(self.shapes)})")
            if ids is not None:
                ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
                n = self.shapes[name][0]
                if ids.size and (ids[0] < 0 or ids[-1] >= n):
                    raise ScarError(f"rows(): table {name!r}: row ids outside 0..{n - 1}")
            out[name] = ids
        return out

    def check_update(self, name: str, u: Update) -> None:
        """A worker's update of table ``name`` must name known rows, in range, sorted and
        unique, with one value row of the table's width per row."""
        if name not in self.shapes:
            raise ScarError(f"update of unknown table {name!r} (tables: {', '.join(self.shapes)})")
        if u.op not in OPS:
            raise ScarError(f"table {name!r}: unknown update op {u.op!r} (ops: add, set)")
        n, width = self.shapes[name]
        rows = n if u.rows is None else len(u.rows)
        shape = getattr(u.values, "shape", None)
        if shape != (rows, width):
            raise ScarError(
                f"table {name!r}: update values must have shape ({rows}, {width}) "
                f"for {'every row' if u.rows is None else f'{rows} rows'}, got {shape}"
            )
        if u.rows is not None and len(u.rows):
            r = np.asarray(u.rows)
            if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer):
                raise ScarError(f"table {name!r}: update rows must be a 1-D array of ids")
            if r[0] < 0 or r[-1] >= n or (len(r) > 1 and not (np.diff(r) > 0).all()):
                raise ScarError(
                    f"table {name!r}: update rows must be sorted unique ids in 0..{n - 1}"
                )

    def split(self, updates: Mapping[str, Update]) -> list[dict[str, Update]]:
        """Cut each table's update into per-shard updates with shard-local row positions."""
        out: list[dict[str, Update]] = [{} for _ in range(self.n_shards)]
        for name, u in updates.items():
            self.check_update(name, u)
            if u.rows is None:
                for k in range(self.n_shards):
                    out[k][name] = Update(None, u.values[self._rows[k][name]], u.op)
                continue
            owner = self.shardings[name].shard_of(u.rows)
            for k in range(self.n_shards):
                sel = owner == k
                local = self._local(name, k, u.rows[sel])
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
    if any(u.rows is None for u in adds):  # some worker pushed every row: a dense sum
        buf = np.zeros((n_rows, width), adds[0].values.dtype)
        for u in adds:
            buf[slice(None) if u.rows is None else u.rows] += u.values
        return None, buf
    # only the pushed rows: the work follows them, not the table (each row's values are
    # added in worker order, from zero, as a dense sum would)
    rows, inverse = np.unique(np.concatenate([u.rows for u in adds]), return_inverse=True)
    total = np.zeros((len(rows), width), adds[0].values.dtype)
    np.add.at(total, inverse, np.concatenate([u.values for u in adds]))
    return (None, total) if len(rows) == n_rows else (rows, total)


class WorkerPart(ABC):
    """One worker's partition of the data and its half of the iteration. A part may hold
    worker-side state (LDA: topic assignments, document-topic counts): ``state`` returns a
    copy of it, ``set_state`` reinstates one (full rollback, re-deal after a restore)."""

    def rows(self, iteration: int, args: Any) -> Mapping[str, np.ndarray | None] | None:
        """The rows this worker reads in ``iteration`` (with the split's ``worker_args``):
        per table, global row ids (any order, repeats allowed: the runtime sorts them and
        drops the repeats) or None for every row; a table left out is not pulled. None (the
        default): every row of every table. Asked only when the split has ``sparse_pulls``."""
        return None

    @abstractmethod
    def update(self, tables: Tables, iteration: int, args: Any) -> dict[str, Update]:
        """This worker's half of ``iteration``. ``tables``: what :meth:`rows` asked for - per
        table the requested rows in increasing id order (every row: the whole table). Returns
        an :class:`Update` per table it changes (global row ids, sorted and unique)."""

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Reinstate worker-side arrays returned by :meth:`state`."""


class ServerRule(ABC):
    """A shard's half of the iteration: apply the summed pushes to its live rows.

    ``slots(name)``: the optimizer state a rule keeps for table ``name`` (Adagrad's sum of
    squares, Adam's moments), as tables of the same rows beside it on the shards, each with
    its initial value. The shards checkpoint a slot row whenever they checkpoint its row and
    restore them together; workers never pull them. ``apply`` receives them by slot name."""

    def slots(self, name: str) -> dict[str, tuple[int, float]]:
        """Per slot: (width - 0 for the table's own width - and initial value)."""
        return {}

    @abstractmethod
    def apply(
        self,
        name: str,
        live: np.ndarray,
        rows: np.ndarray | None,
        total: np.ndarray,
        args: Any,
        slots: Mapping[str, np.ndarray],
    ) -> None: ...


def slot_table(name: str, slot: str) -> str:
    """The name of a rule's slot table of table ``name`` in the shards' state and stores."""
    return f"{name}.{slot}"


class AddRule(ServerRule):
    """``w[rows] += sum``: counts (LDA) and other additive deltas."""

    def apply(self, name, live, rows, total, args, slots):
        if rows is None:
            live += total
        else:
            live[rows] += total


class DescentRule(ServerRule):
    """``w[rows] -= lr * (sum * scale + l2 * w[rows])``: gradient descent on summed gradients
    (``args``: lr, scale, l2 from the split's ``server_args``)."""

    def apply(self, name, live, rows, total, args, slots):
        sgd_apply(live, slice(None) if rows is None else rows, total, **args)


class AdagradRule(ServerRule):
    """Row-wise Adagrad on the mean gradient ``g = sum * scale`` (``args["scale"]``, default
    1): ``acc[rows] += g**2``, ``w[rows] -= lr * g / (sqrt(acc[rows]) + eps)``. Rows not
    pushed are untouched (as torch's sparse Adagrad)."""

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, initial: float = 0.0) -> None:
        check.positive("lr", lr)
        check.positive("eps", eps)
        check.non_negative("initial", initial)
        self.lr, self.eps, self.initial = lr, eps, initial

    def slots(self, name):
        return {"sum": (0, self.initial)}

    def apply(self, name, live, rows, total, args, slots):
        at = slice(None) if rows is None else rows
        t = live.dtype.type
        g = total * t((args or {}).get("scale", 1.0))
        acc = slots["sum"][at] + g * g
        slots["sum"][at] = acc
        live[at] -= t(self.lr) * g / (np.sqrt(acc) + t(self.eps))


class AdamRule(ServerRule):
    """Row-wise (lazy) Adam on the mean gradient ``g = sum * scale``: each row keeps its own
    moments and step count (slots ``exp_avg``, ``exp_avg_sq``, ``step``), advanced only when
    the row is pushed - torch's SparseAdam; for a dense table pushed every iteration, Adam."""

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        check.positive("lr", lr)
        check.positive("eps", eps)
        for b in betas:
            if not 0.0 <= b < 1.0:
                check.fail("betas", "two numbers in [0, 1)", betas)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps

    def slots(self, name):
        return {"exp_avg": (0, 0.0), "exp_avg_sq": (0, 0.0), "step": (1, 0.0)}

    def apply(self, name, live, rows, total, args, slots):
        at = slice(None) if rows is None else rows
        t = live.dtype.type
        b1, b2 = self.betas
        g = total * t((args or {}).get("scale", 1.0))
        step = slots["step"][at] + 1
        slots["step"][at] = step
        m = slots["exp_avg"][at] * t(b1) + g * t(1 - b1)
        v = slots["exp_avg_sq"][at] * t(b2) + g * g * t(1 - b2)
        slots["exp_avg"][at], slots["exp_avg_sq"][at] = m, v
        m_hat = m / (1 - t(b1) ** step)
        v_hat = v / (1 - t(b2) ** step)
        live[at] -= t(self.lr) * m_hat / (np.sqrt(v_hat) + t(self.eps))


class Split(ABC):
    """Driver-side description of an algorithm's worker/server split."""

    rule: ServerRule
    #: True when workers hold state the objective and recovery need (see WorkerPart.state).
    worker_state: bool = False
    #: True when each worker pulls only the rows its batch needs (``WorkerPart.rows``),
    #: straight from the shards; False: every worker reads every row of every table (one
    #: read per shard per iteration, shared by the workers).
    sparse_pulls: bool = False

    def __init__(self, algorithm: Algorithm | None = None) -> None:
        """``algorithm``: the single-process algorithm a built-in split distributes (its
        data, settings and objective); a model of your own may have none and override
        ``initial_tables`` and ``objective``."""
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

    def after_worker_loss(
        self, tables: Tables, states: Sequence[Mapping[str, np.ndarray]], lost: list[int]
    ) -> dict[str, Update] | None:
        """Workers ``lost`` were replaced and given their state as last snapshotted (in
        ``states``, with every other worker's current state): the row changes (op ``"add"``
        or ``"set"``) that make the tables agree with these states again. None: none needed
        (workers without state)."""
        return None

    def rebuild(
        self,
        tables: Tables,
        rows: Mapping[str, np.ndarray],
        states: Sequence[Mapping[str, np.ndarray]],
        iteration: int,
    ) -> dict[str, Update] | None:
        """Recovery by recomputation (``--recovery rebuild``): after the lost ``rows`` were
        restored from the checkpoint, the ``"set"`` updates that recompute those the rest of the
        state determines after ``iteration`` (the tables, the workers' ``states``). None: the
        model has nothing to recompute them from."""
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
    """Pulls the weights of the features its batch holds and the bias (the last row)."""

    def __init__(self, idx: np.ndarray, y: np.ndarray, n_rows: int) -> None:
        self.idx, self.y, self.n_rows = idx, y, n_rows

    def rows(self, iteration, args):
        return {"weights": np.append(np.unique(self.idx[args]), self.n_rows - 1)}

    def update(self, tables, iteration, args):
        w = tables["weights"]  # the rows asked for, the bias last
        if len(args) == 0:
            return {"weights": Update(np.empty(0, np.int64), np.empty((0, 1), w.dtype))}
        ids = self.rows(iteration, args)["weights"]
        local = np.searchsorted(ids, self.idx[args])
        rows, g, _ = logloss_gradient(local, self.y[args], w)
        return {"weights": Update(ids[rows], g)}


class SparseLRSplit(Split):
    """Data-parallel sparse LR: workers push the gradient sums of the rows their examples
    touch; shards step those rows only."""

    rule = DescentRule()
    algorithm: SparseLR
    sparse_pulls = True

    @property
    def n_examples(self) -> int:
        return int(len(self.algorithm.data.y))

    def parts(self, n_workers):
        d = self.algorithm.data
        return [
            SparseLRPart(d.idx[lo:hi].copy(), d.y[lo:hi].copy(), self.algorithm.shape[0])
            for lo, hi in self._ranges(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        return self._local_batches(self.algorithm.batch(iteration), n_workers)

    def server_args(self, iteration):
        a = self.algorithm
        return {"lr": a.p.lr, "scale": 1.0 / len(a.batch(iteration)), "l2": a.p.l2}
