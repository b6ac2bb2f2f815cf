"""The live set: which segment holds the latest saved value of each row.

Segments are added in commit order; a row belongs to the last segment that contains it. A
segment none of whose rows it still owns is dead: it drops out of the next manifest (its file
is deleted once no retained manifest lists it).
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from .format import Segment, Table

_DENSE_UIDS = 1 << 20  # count losses in an array while the live uids span at most this many
_NO_ROWS = np.zeros(0, np.int64)  # the rows count_owners is given for a whole chunk
COMPILED_ROWS = 1 << 16  # sparse updates of at least this many rows use the compiled loops


def compiled(rows: int):
    """The compiled loops (``_kernels``) for work over ``rows`` rows, or None for numpy's.
    Always once a process has loaded them (a long-lived writer of many small saves does so up
    front: ``load_kernels``); before that, only for at least ``COMPILED_ROWS`` rows, which pay
    for loading them (~0.4 s). Both give the same results (tests/test_store_durable.py)."""
    kernels = sys.modules.get(f"{__package__}._kernels")
    if kernels is not None and getattr(kernels, "LOADED", False):
        return kernels
    # Not loaded, or being imported by another thread right now (a module is in sys.modules
    # from the start of its import: an async writer found it there without its loops while
    # the saving thread loaded them, and failed). The import below waits for one in progress.
    if rows < COMPILED_ROWS:
        return None
    from . import _kernels as kernels

    return kernels


def increasing(ids: np.ndarray) -> bool:
    """Whether the 1-D int array ``ids`` is strictly increasing (sorted, no repeats): one
    compiled pass when the loops are loaded, else ``np.diff`` (two temporaries)."""
    kernels = compiled(ids.size)
    if kernels is not None and ids.dtype == np.int64 and ids.ndim == 1:
        return bool(kernels.increasing(ids))
    return ids.size < 2 or bool((np.diff(ids) > 0).all())


def load_kernels() -> None:
    """Load the compiled loops and their machine code now, so that every later save uses them
    and none pays the load (a shard server calls this before serving)."""
    from . import _kernels

    _kernels.warm_up()


# An update: a new segment with its row ids (None: every row of its chunk) and per-row
# iterations (None: all rows at the segment's iteration).
Update = tuple[Segment, np.ndarray | None, np.ndarray | None]


PER_ROW = -2  # a segment's iteration entry when its rows' iterations are kept per row


class LiveSet:
    """Per row: the uid of the segment that owns it (``owner``, -1: never saved); per segment
    uid: the iteration it was saved at. Two more per-row arrays are written only where needed
    - ``pos``, a row's place in a sparse segment (a dense one holds row ``r`` of its chunk at
    ``r - start``), and ``row_iters``, for the rows of merged segments (per-row iterations) -
    so a store of dense checkpoints touches 4 bytes of index per row, not 16 (the untouched
    pages of ``np.zeros`` cost nothing)."""

    def __init__(self, tables: tuple[Table, ...]) -> None:
        self.tables = tables
        self.owner = [np.full(t.n_rows, -1, np.int32) for t in tables]  # segment uid
        self.pos = [np.zeros(t.n_rows, np.int32) for t in tables]  # place in a sparse segment
        self.row_iters = [np.zeros(t.n_rows, np.int64) for t in tables]  # of merged segments
        # uid + 1 -> iteration, PER_ROW, or -1 (bad); [0] = -1 for "never saved" (uid -1), so
        # that a row's iteration is one gather, _iteration[owner + 1]
        self._iteration = np.full(64, -1, np.int64)
        self.segments: dict[int, Segment] = {}  # uid -> segment, in commit order
        self.owned: dict[int, int] = {}  # uid -> rows it still owns
        self.per_chunk: Counter = Counter()  # (table, chunk) -> live segments
        self.bad: set[int] = set()  # uids of segments known to be corrupt or missing
        self._uid = 0
        # losses' tallies: by uid - (oldest live uid), all zero between calls; and the
        # places it touched (so each call costs its rows, not the span of live uids)
        self._tally = np.zeros(0, np.int64)
        self._touched = np.zeros(0, np.int64)

    def _register(self, iteration: int) -> int:
        """A new segment uid, saved at ``iteration``."""
        uid = self._uid
        self._uid += 1
        if uid + 1 >= self._iteration.size:
            self._iteration = np.concatenate([self._iteration, np.empty_like(self._iteration)])
        self._iteration[uid + 1] = iteration
        return uid

    def iterations(self, t: int, rows) -> np.ndarray:
        """The iteration each of ``rows`` (ids or a slice) of table ``t`` was saved at; -1:
        never saved, or only in a bad segment."""
        out = self._iteration[self.owner[t][rows] + 1]  # one gather, no boolean masks
        per = out == PER_ROW
        if per.any():
            out = np.where(per, self.row_iters[t][rows], out)
        return out

    def positions(self, t: int, rows: np.ndarray, seg: Segment) -> np.ndarray:
        """Where ``rows`` (all owned by ``seg``) sit in its values."""
        if seg.dense:
            return rows - self.tables[t].chunks[seg.chunk]
        return self.pos[t][rows]

    def _rows(self, seg: Segment, ids: np.ndarray | None):
        t = self.tables[seg.table]
        return slice(t.chunks[seg.chunk], t.chunks[seg.chunk + 1]) if ids is None else ids

    def losses(self, updates: list[Update]) -> Counter:
        """uid -> rows each live segment loses to ``updates`` (pass it to ``preview`` and
        ``apply``, which otherwise compute it themselves)."""
        lost: Counter = Counter()
        if not self.segments:
            return lost
        lo = next(iter(self.segments))  # uids grow in commit order: the oldest live one
        span = self._uid - lo
        n = 0  # places of self._tally touched
        for seg, ids, _ in updates:
            t, owner, rows = self.tables[seg.table], self.owner[seg.table], self._rows(seg, ids)
            # a whole chunk does not load the compiled loops: a process that reopens a store
            # of full checkpoints (a replacement shard) would wait ~0.5 s for them, numpy's
            # count over the chunk takes milliseconds
            kernels = compiled(0 if ids is None else ids.size)
            if kernels is None or span > _DENSE_UIDS:
                old = owner[rows]
                old = old[old >= 0]
                if ids is None and span <= old.size:  # count in an array no larger than rows
                    counts = np.bincount(old - lo)
                    uids = np.flatnonzero(counts)
                    counts, uids = counts[uids], uids + lo
                else:  # sort the owners (a very old segment still lives, or few rows)
                    uids, counts = np.unique(old, return_counts=True)
                lost.update(dict(zip(uids.tolist(), counts.tolist(), strict=True)))
                continue
            if self._tally.size < span:  # uids are dense: tally in an array, no sorting
                self._tally = np.zeros(max(span, 2 * self._tally.size), np.int64)
                self._touched = np.zeros(self._tally.size, np.int64)
            n = kernels.count_owners(
                owner, ids is None, _NO_ROWS if ids is None else ids, t.chunks[seg.chunk],
                t.chunks[seg.chunk + 1], lo, self._tally, self._touched, n,
            )  # fmt: skip
        if n:
            places = self._touched[:n]
            counts = self._tally[places]
            self._tally[places] = 0  # all zero again for the next call
            lost.update(dict(zip((places + lo).tolist(), counts.tolist(), strict=True)))
        return lost

    def preview(self, updates: list[Update], lost: Counter | None = None) -> list[Segment]:
        """The segments that will be live once ``updates`` are applied, in order."""
        lost = self.losses(updates) if lost is None else lost
        keep = [s for uid, s in self.segments.items() if self.owned[uid] > lost.get(uid, 0)]
        return keep + [seg for seg, _, _ in updates]

    def apply(self, updates: list[Update], lost: Counter | None = None) -> None:
        lost = self.losses(updates) if lost is None else lost
        for seg, ids, iters in updates:
            uid = self._register(seg.iteration if iters is None else PER_ROW)
            t, rows = seg.table, self._rows(seg, ids)
            if ids is None:
                self.owner[t][rows] = uid
            elif (kernels := compiled(ids.size)) is not None:
                kernels.assign(self.owner[t], self.pos[t], ids, uid)
            else:
                self.owner[t][rows] = uid
                self.pos[t][rows] = np.arange(seg.rows, dtype=np.int32)
            if iters is not None:
                self.row_iters[t][rows] = iters
            self.segments[uid] = seg
            self.owned[uid] = seg.rows
            self.per_chunk[seg.table, seg.chunk] += 1
        for uid, n in lost.items():
            self.owned[uid] -= n
            if self.owned[uid] <= 0:
                seg = self.segments.pop(uid)
                del self.owned[uid]
                self.per_chunk[seg.table, seg.chunk] -= 1

    def apply_bad(self, seg: Segment, ids: np.ndarray | None) -> None:
        """A bad segment takes only the rows that have no intact older copy (so that reading
        them fails, naming it); every other row keeps its older intact owner."""
        t = self.tables[seg.table]
        rows = np.arange(t.chunks[seg.chunk], t.chunks[seg.chunk + 1]) if ids is None else ids
        cur = self.owner[seg.table][rows]
        take = rows[(cur < 0) | np.isin(cur, list(self.bad))]
        if not take.size:
            return
        uid = self._register(-1)
        old = self.owner[seg.table][take]
        for u, n in Counter(old[old >= 0].tolist()).items():
            self.owned[u] -= n
            if self.owned[u] <= 0:
                gone = self.segments.pop(u)
                del self.owned[u]
                self.per_chunk[gone.table, gone.chunk] -= 1
        self.owner[seg.table][take] = uid
        self.segments[uid], self.owned[uid] = seg, int(take.size)
        self.per_chunk[seg.table, seg.chunk] += 1
        self.bad.add(uid)

    def bad_rows(self, t: int, rows) -> tuple[Segment, int] | None:
        """(a bad segment, how many of ``rows`` only it holds), if any of them."""
        own = self.owner[t][rows]
        hit = np.isin(own, list(self.bad)) if self.bad else np.zeros(own.shape, bool)
        if hit.any():
            return self.segments[int(own[hit][0])], int(hit.sum())
        return None

    def chunk_segments(self, t: int, c: int) -> list[tuple[int, Segment]]:
        """(uid, segment) of the live segments of chunk ``c`` of table ``t``, in commit order."""
        return [(u, s) for u, s in self.segments.items() if (s.table, s.chunk) == (t, c)]

    def fill_chunk(
        self,
        t: int,
        c: int,
        uids: list[int],
        offsets: np.ndarray,
        values: np.ndarray,
        merged: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Write into ``merged`` (the chunk's rows x width) every row of chunk ``c`` that one
        of the live segments ``uids`` owns, as that segment holds it - the segment of uid
        ``uids[j]`` holds its rows at ``values[offsets[j]:offsets[j + 1]]``. Returns (each
        row's saved iteration, -1 for the rows not taken; which rows were taken). Rows owned
        by no segment of ``uids`` are left as they are in ``merged``. None of ``uids`` may
        be bad."""
        table = self.tables[t]
        lo, hi = table.chunks[c], table.chunks[c + 1]
        umin = min(uids, default=0)
        slot = np.full(max(uids, default=0) - umin + 1, -1, np.int64)
        slot[np.asarray(uids, np.int64) - umin] = np.arange(len(uids))
        dense = np.array([self.segments[u].dense for u in uids], bool)
        offsets = np.asarray(offsets, np.int64)
        own, pos = self.owner[t][lo:hi], self.pos[t][lo:hi]
        iters, took = np.full(hi - lo, -1, np.int64), np.zeros(hi - lo, bool)
        if (kernels := compiled(hi - lo)) is not None:
            kernels.fill_chunk(
                own, pos, slot, umin, dense, offsets, values.view(np.uint8), self._iteration,
                self.row_iters[t][lo:hi], merged.view(np.uint8), iters, took,
            )  # fmt: skip
            return iters, took
        k = own.astype(np.int64) - umin
        rows = np.flatnonzero((k >= 0) & (k < slot.size))
        s = slot[k[rows]]
        rows, s = rows[s >= 0], s[s >= 0]
        merged[rows] = values[offsets[s] + np.where(dense[s], rows, pos[rows])]
        iters[rows] = self.iterations(t, rows + lo)
        took[rows] = True
        return iters, took

    def live_segments(self, t: int, c: int) -> int:
        return self.per_chunk[t, c]

    def single_owner(self, t: int, c: int) -> Segment | None:
        """The segment that owns every row of chunk ``c``, if one does."""
        table = self.tables[t]
        own = self.owner[t][table.chunks[c] : table.chunks[c + 1]]
        if own.size and own[0] >= 0 and own[0] not in self.bad and (own == own[0]).all():
            return self.segments[int(own[0])]
        return None
