"""Worker/server splits of MF-ALS and LDA (collapsed Gibbs), on the same compiled kernels as
the single-process algorithms (:mod:`scar.algorithms.mf_als`, :mod:`scar.algorithms.lda_gibbs`).

**MF-ALS.** Worker ``w`` holds a contiguous range of users with their ratings (CSR by user) and
a contiguous range of items with theirs (CSR by item). An odd iteration re-solves the worker's
user rows from the pulled item table, an even one its item rows from the user table, and pushes
them with op ``"set"``. Every row is solved exactly as in ``MF.step``, so any number of workers
reproduces the single-process trajectory bit for bit.

**LDA.** Worker ``w`` holds a contiguous range of documents (token ranges cut at document
boundaries, balanced by tokens), their topic assignments ``z`` and document-topic counts. It
pulls the word-topic table, recomputes the topic totals from it, runs the single-process sweep
over its own tokens and pushes the count deltas of the words it touched (op ``"add"``). Token
``i`` of the corpus draws the same random number as in the single-process sampler (the
worker's stream key is offset by its first token), so one worker reproduces ``LDA.step``
exactly; several workers sample on counts that are stale within an iteration (AD-LDA): a
different chain, whose counts stay exact (the deltas of a worker sum to its own tokens' moves).

*Re-deal after a restore.* Restored word rows are made authoritative as in
``LDA.after_restore``, for any number of workers, in one pass at the coordinator: it gathers
the workers' ``z`` and document-topic counts (in corpus order: workers hold consecutive
tokens), runs ``LDA.after_restore`` on them with the restored table, and hands every worker its
slice back. Tokens never move between workers, only their topics change, and each worker's
share of a restored row is what that pass leaves it. This costs one int32 per token of traffic
per recovery, and gives the re-deal of the single-process algorithm exactly (same key, same
moves), whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import validation as check
from ..algorithms.lda_gibbs import LDA, gibbs_sweep, joint_loglik, sweep_key
from ..algorithms.mf_als import MF, solve_rows
from .split import AddRule, Split, Update, WorkerPart


def _cuts(n: int, parts: int) -> np.ndarray:
    return np.linspace(0, n, parts + 1).round().astype(np.int64)


def _csr_slice(csr: tuple[np.ndarray, np.ndarray, np.ndarray], lo: int, hi: int):
    indptr, cols, vals = csr
    s, e = indptr[lo], indptr[hi]
    return indptr[lo : hi + 1] - s, cols[s:e].copy(), vals[s:e].copy()


# -- MF-ALS -----------------------------------------------------------------------------------
class MFPart(WorkerPart):
    def __init__(self, users: tuple[int, int], by_user, items: tuple[int, int], by_item, l2):
        self.ranges = {MF.USERS: users, MF.ITEMS: items}
        self.csr = {MF.USERS: by_user, MF.ITEMS: by_item}
        self.l2 = l2

    def update(self, tables, iteration, args):
        solve, other = (MF.USERS, MF.ITEMS) if iteration % 2 == 1 else (MF.ITEMS, MF.USERS)
        lo, hi = self.ranges[solve]
        out = np.empty((hi - lo, tables[solve].shape[1]), tables[solve].dtype)
        solve_rows(*self.csr[solve], tables[other], self.l2, out)
        return {solve: Update(np.arange(lo, hi, dtype=np.int64), out, "set")}


class MFSplit(Split):
    """ALS half-steps: workers set the rows of their users (odd) or items (even)."""

    rule = AddRule()  # never used: every push is a "set"
    algorithm: MF

    def parts(self, n_workers):
        a = self.algorithm
        nu, ni = a.data.n_users, a.data.n_items
        check.whole("workers", n_workers, le=min(nu, ni), note="(the users or items)")
        u, i = _cuts(nu, n_workers), _cuts(ni, n_workers)
        return [
            MFPart(
                (int(u[w]), int(u[w + 1])),
                _csr_slice(a.by_user, u[w], u[w + 1]),
                (int(i[w]), int(i[w + 1])),
                _csr_slice(a.by_item, i[w], i[w + 1]),
                a.p.l2,
            )
            for w in range(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        return [None] * n_workers

    def server_args(self, iteration):
        return None

    def rebuild(self, tables, rows, states, iteration):
        """The lost rows of the side the last half-step solved, solved again from the other
        side (``MF.rebuild``)."""
        a = self.algorithm
        sides = a.rebuilds(iteration)
        if not sides:
            return None
        side = sides[0]
        work = {n: np.array(t, copy=True) for n, t in tables.items()}
        a.rebuild(work, {side: rows[side]}, iteration)
        return {side: Update(rows[side], work[side][rows[side]], "set")}


# -- LDA --------------------------------------------------------------------------------------
class LDAPart(WorkerPart):
    def __init__(
        self,
        words: np.ndarray,
        docs: np.ndarray,
        z: np.ndarray,
        ndt: np.ndarray,
        first_token: int,
        params: tuple[int, float, float, float],
    ) -> None:
        self.words, self.docs = words, docs  # docs numbered from the worker's first document
        self.z, self.ndt = z, ndt
        self.first_token = first_token
        self.seed, self.alpha, self.beta, self.vbeta = params

    def update(self, tables, iteration, args):
        nwt = tables[LDA.TABLE]  # assembled from the pulls: a private, writable copy
        before = nwt.copy()
        nt = nwt.sum(axis=0, dtype=np.float64)
        key = sweep_key(self.seed, iteration, self.first_token)
        gibbs_sweep(
            self.words, self.docs, self.z, nwt, self.ndt, nt,
            self.alpha, self.beta, self.vbeta, key,
        )  # fmt: skip
        nwt -= before
        rows = np.flatnonzero(np.any(nwt != 0, axis=1))
        return {LDA.TABLE: Update(rows, nwt[rows], "add")}

    def state(self):
        return {"z": self.z.copy(), "doc_topic": self.ndt.copy()}

    def set_state(self, state):
        self.z = np.array(state["z"], dtype=np.int32, copy=True)
        self.ndt = np.array(state["doc_topic"], dtype=np.int32, copy=True)


class LDASplit(Split):
    """Document-parallel Gibbs sampling with count deltas pushed to word-row shards."""

    rule = AddRule()
    worker_state = True
    algorithm: LDA

    def initial_tables(self):
        tables = self.algorithm.start()
        self._start = {n: v.copy() for n, v in self.algorithm.aux_state().items()}
        return tables

    def _token_cuts(self, n_workers: int) -> tuple[np.ndarray, np.ndarray]:
        """(token boundaries, document boundaries) of the workers' ranges."""
        a = self.algorithm
        D = a.corpus.n_docs
        check.whole("workers", n_workers, le=D, note="(the documents)")
        starts = np.searchsorted(a.docs, np.arange(D + 1))  # first token of every document
        want = _cuts(len(a.words), n_workers)
        dcut = np.searchsorted(starts, want)  # first document starting at or after each cut
        dcut[0], dcut[-1] = 0, D
        dcut = np.maximum.accumulate(dcut)
        return starts[dcut], dcut

    def parts(self, n_workers):
        a = self.algorithm
        start = getattr(self, "_start", None) or a.aux_state()
        tcut, dcut = self._token_cuts(n_workers)
        self._cuts = tcut, dcut
        params = (a.p.seed, a.p.alpha, a.p.beta, a.corpus.n_words * a.p.beta)
        return [
            LDAPart(
                a.words[tcut[w] : tcut[w + 1]].copy(),
                a.docs[tcut[w] : tcut[w + 1]] - np.int32(dcut[w]),
                start["z"][tcut[w] : tcut[w + 1]].copy(),
                start["doc_topic"][dcut[w] : dcut[w + 1]].copy(),
                int(tcut[w]),
                params,
            )
            for w in range(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        return [None] * n_workers

    def server_args(self, iteration):
        return None

    def objective(self, tables, states=()):
        a = self.algorithm
        ndt = np.concatenate([s["doc_topic"] for s in states])
        return -float(joint_loglik(tables[LDA.TABLE], ndt, a.p.alpha, a.p.beta)) / len(a.words)

    def rebuild(self, tables, rows, states, iteration):
        """Lost word rows counted again from every worker's topic assignments: exact."""
        a = self.algorithm
        ids = np.asarray(rows[LDA.TABLE], dtype=np.int64)
        z = np.concatenate([s["z"] for s in states])
        counts = a.counts_of(z, ids).astype(tables[LDA.TABLE].dtype)
        return {LDA.TABLE: Update(ids, counts, "set")}

    def after_worker_loss(self, tables, states, lost):
        """The word-topic counts are a function of every worker's topic assignments: counted
        again from them (the replaced workers' as of their snapshot), the rows that differ
        are corrected - the counts stay exact, the replaced workers' sweeps since the
        snapshot are undone."""
        a = self.algorithm
        nwt = tables[LDA.TABLE]
        delta = a.counts_of(np.concatenate([s["z"] for s in states])) - nwt
        rows = np.flatnonzero(np.any(delta != 0, axis=1))
        return {LDA.TABLE: Update(rows, delta[rows].astype(nwt.dtype), "add")}

    def after_restore(
        self,
        tables: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray | None],
        states: Sequence[Mapping[str, np.ndarray]],
        iteration: int,
    ) -> list[dict[str, np.ndarray]]:
        a = self.algorithm
        a.skip_to(
            iteration, {n: np.concatenate([s[n] for s in states]) for n in ("z", "doc_topic")}
        )
        a.after_restore(tables, rows)
        aux = a.aux_state()
        tcut, dcut = self._cuts
        return [
            {
                "z": aux["z"][tcut[w] : tcut[w + 1]],
                "doc_topic": aux["doc_topic"][dcut[w] : dcut[w + 1]],
            }
            for w in range(len(states))
        ]
