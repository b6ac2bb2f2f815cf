"""Matrix factorisation by alternating least squares (ALS) with L2 regularisation.

Ratings ``r_ui`` are split once into training and held-out sets (a fixed split, the same for
every run and seed, ``test_fraction`` held out). With ``mu`` the mean training rating, user
factors ``p_u`` and item factors ``q_i`` (rank ``k``), the objective is the regularised training
loss over the ``N`` training ratings

    f(P, Q) = [ sum_train (r_ui - mu - p_u.q_i)^2 + l2 (|P|^2 + |Q|^2) ] / N

(plain L2: a row with few ratings is shrunk towards 0 more than a row with many. The weighted
form of ALS-WR, ``l2 * n_u |p_u|^2``, fits as well but lets rarely-rated rows swing widely;
their large changes then dominate a priority checkpoint although they barely matter.)

Two server tables, ``users`` (rows = users) and ``items`` (rows = items), width ``k``, float64;
both are sharded, so a failure loses rows of both.

**One iteration is one ALS half-step**: odd iterations re-solve every user row exactly given the
items, even ones every item row given the users. Each half-step minimises ``f`` over one block,
so it never increases ``f``; counting in half-steps also halves the granularity of the measured
rework (a full ALS sweep re-solves one factor from the other, so it self-corrects fast and
whole-sweep rework is mostly 0-2). A row with no training rating is 0 (its minimiser). The solves are batched in a compiled kernel (one k x k Cholesky per row).

The held-out RMSE (predictions clipped to the training rating range) is reported by
:meth:`MF.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numba import njit

from .. import validation as check
from ..datasets import Ratings
from .base import Algorithm, Tables

SPLIT_SEED = 20190610  # the held-out split is a property of the data set, not of a run


@dataclass(frozen=True)
class MFParams:
    rank: int = 4
    l2: float = 5.0
    test_fraction: float = 0.1
    init_scale: float = 0.1
    seed: int = 0


@njit(cache=True)
def solve_rows(indptr, cols, vals, other, lam, out):  # pragma: no cover - compiled
    """out[u] = argmin_x sum_j (vals[j] - x.other[cols[j]])^2 + lam |x|^2, for every row u of
    the CSR matrix (indptr, cols, vals): one ALS half-step's rows."""
    n, k = out.shape
    A = np.empty((k, k))
    b = np.empty(k)
    for u in range(n):
        s, e = indptr[u], indptr[u + 1]
        if e == s:
            out[u, :] = 0.0
            continue
        A[:, :] = 0.0
        b[:] = 0.0
        for j in range(s, e):
            f = other[cols[j]]
            r = vals[j]
            for a in range(k):
                fa = f[a]
                b[a] += r * fa
                for c in range(a + 1):
                    A[a, c] += fa * f[c]
        reg = lam
        # Cholesky A = L L^T in the lower triangle, then two triangular solves.
        for a in range(k):
            A[a, a] += reg
            for c in range(a + 1):
                s2 = A[a, c]
                for m in range(c):
                    s2 -= A[a, m] * A[c, m]
                if a == c:
                    A[a, a] = np.sqrt(s2)
                else:
                    A[a, c] = s2 / A[c, c]
        for a in range(k):
            s2 = b[a]
            for m in range(a):
                s2 -= A[a, m] * b[m]
            b[a] = s2 / A[a, a]
        for a in range(k - 1, -1, -1):
            s2 = b[a]
            for m in range(a + 1, k):
                s2 -= A[m, a] * b[m]
            b[a] = s2 / A[a, a]
        out[u, :] = b


@njit(cache=True)
def _squared_error(users, items, vals, P, Q, lo, hi):  # pragma: no cover - compiled
    """sum_j (vals[j] - clip(P[users[j]].Q[items[j]], lo, hi))^2 (no clipping when lo > hi)."""
    total = 0.0
    k = P.shape[1]
    for j in range(vals.shape[0]):
        pred = 0.0
        for a in range(k):
            pred += P[users[j], a] * Q[items[j], a]
        if lo <= hi:
            pred = min(max(pred, lo), hi)
        d = vals[j] - pred
        total += d * d
    return total


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int):
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order].astype(np.int32), vals[order]


class MF(Algorithm):
    name = "mf"
    deterministic = True
    USERS, ITEMS = "users", "items"

    def __init__(self, data: Ratings, params: MFParams) -> None:
        p = params
        check.whole("rank", p.rank, ge=1)
        check.positive("l2", p.l2)
        check.non_negative("init_scale", p.init_scale)
        check.number("test_fraction", p.test_fraction, ge=0, lt=1)
        self.data = data
        self.p = p
        test = np.random.default_rng(SPLIT_SEED).random(len(data)) < p.test_fraction
        train = ~test
        self.train = (data.users[train], data.items[train], data.ratings[train])
        self.test = (data.users[test], data.items[test], data.ratings[test])
        self.mu = float(self.train[2].mean())
        self.lo, self.hi = float(self.train[2].min()), float(self.train[2].max())
        u, i, r = self.train
        self.by_user = _csr(u, i, r - self.mu, data.n_users)
        self.by_item = _csr(i, u, r - self.mu, data.n_items)

    def start(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.p.seed, 0xA15])
        k, s = self.p.rank, self.p.init_scale
        return {
            self.USERS: s * rng.standard_normal((self.data.n_users, k)),
            self.ITEMS: s * rng.standard_normal((self.data.n_items, k)),
        }

    def step(self, tables: Tables, iteration: int) -> None:
        P, Q = tables[self.USERS], tables[self.ITEMS]
        if iteration % 2 == 1:
            solve_rows(*self.by_user, Q, self.p.l2, P)
        else:
            solve_rows(*self.by_item, P, self.p.l2, Q)

    def rebuilds(self, iteration: int) -> tuple[str, ...]:
        """The side the last half-step solved is the closed-form solution given the other:
        users after an odd iteration, items after an even one (none at the start)."""
        if iteration < 1:
            return ()
        return (self.USERS,) if iteration % 2 == 1 else (self.ITEMS,)

    def rebuild(self, tables: Tables, rows: Mapping[str, np.ndarray], iteration: int) -> None:
        """Lost rows of the side last solved, solved again from the other side: the rows the
        last half-step computed, exactly, when the other side is as it was then."""
        (side,) = self.rebuilds(iteration)
        indptr, cols, vals = self.by_user if side == self.USERS else self.by_item
        other = tables[self.ITEMS if side == self.USERS else self.USERS]
        ids = np.asarray(rows[side], dtype=np.int64)
        starts, ends = indptr[ids], indptr[ids + 1]
        sub = np.zeros(len(ids) + 1, dtype=indptr.dtype)
        np.cumsum(ends - starts, out=sub[1:])
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)] or [[]])
        take = take.astype(np.int64)
        out = np.empty((len(ids), other.shape[1]), other.dtype)
        solve_rows(sub, cols[take], vals[take], other, self.p.l2, out)
        tables[side][ids] = out

    def objective(self, tables: Tables) -> float:
        P, Q = tables[self.USERS], tables[self.ITEMS]
        u, i, r = self.train
        sse = _squared_error(u, i, r - self.mu, P, Q, 1.0, 0.0)
        reg = float(np.sum(P * P) + np.sum(Q * Q))
        return float(sse + self.p.l2 * reg) / len(r)

    def rmse(self, tables: Tables, split: str = "test") -> float:
        """Root mean squared error of the clipped predictions on ``split`` (test or train)."""
        u, i, r = self.test if split == "test" else self.train
        if len(r) == 0:
            return float("nan")
        lo, hi = self.lo - self.mu, self.hi - self.mu
        sse = _squared_error(u, i, r - self.mu, tables[self.USERS], tables[self.ITEMS], lo, hi)
        return float(np.sqrt(sse / len(r)))

    def metrics(self, tables: Tables) -> dict[str, float]:
        out = {"test_rmse": self.rmse(tables, "test")} if len(self.test[2]) else {}
        return {**out, "train_rmse": self.rmse(tables, "train")}

    def params(self) -> dict:
        return {
            "optimizer": "als",
            "iteration": "half-step (odd: users, even: items)",
            "rank": self.p.rank,
            "l2": self.p.l2,
            "regularisation": "l2 (|P|^2 + |Q|^2), objective divided by the training ratings",
            "test_fraction": self.p.test_fraction,
            "init_scale": self.p.init_scale,
            "rows": {self.USERS: self.data.n_users, self.ITEMS: self.data.n_items},
            "width": self.p.rank,
            "dataset": self.data.name,
            "ratings": len(self.data),
            "train_ratings": len(self.train[2]),
        }
