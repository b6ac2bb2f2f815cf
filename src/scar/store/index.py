"""The live set: which segment holds the latest saved value of each row.

Segments are added in commit order; a row belongs to the last segment that contains it. A
segment none of whose rows it still owns is dead: it drops out of the next manifest (its file
is deleted once no retained manifest lists it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .format import Segment, Table

_DENSE_UIDS = 1 << 20  # count losses in an array while the live uids span at most this many
COMPILED_ROWS = 1 << 16  # sparse updates of at least this many rows use the compiled loops


# An update: a new segment with its row ids (None: every row of its chunk) and per-row
# iterations (None: all rows at the segment's iteration).
Update = tuple[Segment, np.ndarray | None, np.ndarray | None]


class LiveSet:
    def __init__(self, tables: tuple[Table, ...]) -> None:
        self.tables = tables
        self.owner = [np.full(t.n_rows, -1, np.int32) for t in tables]  # segment uid
        self.pos = [np.zeros(t.n_rows, np.int32) for t in tables]  # row inside that segment
        self.iters = [np.full(t.n_rows, -1, np.int64) for t in tables]  # saved at iteration
        self.segments: dict[int, Segment] = {}  # uid -> segment, in commit order
        self.owned: dict[int, int] = {}  # uid -> rows it still owns
        self.per_chunk: Counter = Counter()  # (table, chunk) -> live segments
        self.bad: set[int] = set()  # uids of segments known to be corrupt or missing
        self._uid = 0

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
        if self._uid - lo > _DENSE_UIDS:  # a very old segment still lives: count sparsely
            for seg, ids, _ in updates:
                old = self.owner[seg.table][self._rows(seg, ids)]
                uids, counts = np.unique(old[old >= 0], return_counts=True)
                lost.update(dict(zip(uids.tolist(), counts.tolist(), strict=True)))
            return lost
        counts = np.zeros(self._uid - lo, np.int64)  # uids are dense: count without sorting
        for seg, ids, _ in updates:
            if ids is not None and ids.size >= COMPILED_ROWS:
                from . import _kernels

                _kernels.count_owners(self.owner[seg.table], ids, lo, counts)
                continue
            old = self.owner[seg.table][self._rows(seg, ids)]
            old = old[old >= 0]
            if old.size:
                counts += np.bincount(old - lo, minlength=counts.size)
        uids = np.flatnonzero(counts)
        return Counter(dict(zip((uids + lo).tolist(), counts[uids].tolist(), strict=True)))

    def preview(self, updates: list[Update], lost: Counter | None = None) -> list[Segment]:
        """The segments that will be live once ``updates`` are applied, in order."""
        lost = self.losses(updates) if lost is None else lost
        keep = [s for uid, s in self.segments.items() if self.owned[uid] > lost.get(uid, 0)]
        return keep + [seg for seg, _, _ in updates]

    def apply(self, updates: list[Update], lost: Counter | None = None) -> None:
        lost = self.losses(updates) if lost is None else lost
        for seg, ids, iters in updates:
            uid = self._uid
            self._uid += 1
            t = seg.table
            if ids is not None and ids.size >= COMPILED_ROWS:
                from . import _kernels

                it = np.empty(0, np.int64) if iters is None else np.asarray(iters, np.int64)
                _kernels.assign(
                    self.owner[t], self.pos[t], self.iters[t], ids, uid, seg.iteration, it
                )
            else:
                rows = self._rows(seg, ids)
                self.owner[t][rows] = uid
                self.pos[t][rows] = np.arange(seg.rows, dtype=np.int32)
                self.iters[t][rows] = seg.iteration if iters is None else iters
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
        uid = self._uid
        self._uid += 1
        old = self.owner[seg.table][take]
        for u, n in Counter(old[old >= 0].tolist()).items():
            self.owned[u] -= n
            if self.owned[u] <= 0:
                gone = self.segments.pop(u)
                del self.owned[u]
                self.per_chunk[gone.table, gone.chunk] -= 1
        self.owner[seg.table][take] = uid
        self.iters[seg.table][take] = -1
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

    def live_segments(self, t: int, c: int) -> int:
        return self.per_chunk[t, c]

    def single_owner(self, t: int, c: int) -> Segment | None:
        """The segment that owns every row of chunk ``c``, if one does."""
        table = self.tables[t]
        own = self.owner[t][table.chunks[c] : table.chunks[c + 1]]
        if own.size and own[0] >= 0 and own[0] not in self.bad and (own == own[0]).all():
            return self.segments[int(own[0])]
        return None
