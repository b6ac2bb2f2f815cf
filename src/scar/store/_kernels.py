"""Compiled loops for the live set, row bitmaps and compaction.

Imported on first use only (``index.compiled``): importing numba and loading the cached machine
code costs a process ~0.4 s, which a writer pays back with large sparse saves (a priority
checkpoint of 10^5+ rows: ~1.5 ms less CPU per save at 10^6 rows) or with many small ones (a
long-lived shard server loads them up front, ``warm_up``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_owners(owner, whole, rows, start, stop, lo, counts, touched, n):
    """counts[u - lo] += rows owned by uid u, over rows ``start:stop`` if ``whole``, else over
    ``rows``; each place that leaves 0 is appended to ``touched`` (which holds ``n``
    already): returns the new ``n``. One pass, no temporaries, nothing proportional to
    ``counts``' size."""
    for i in range(stop - start if whole else rows.size):
        o = owner[start + i] if whole else owner[rows[i]]
        if o >= 0:
            k = o - lo
            if counts[k] == 0:
                touched[n] = k
                n += 1
            counts[k] += 1
    return n


@njit(cache=True, nogil=True)
def increasing(ids):
    for i in range(1, ids.size):
        if ids[i] <= ids[i - 1]:
            return False
    return True


@njit(cache=True, nogil=True)
def assign(owner, pos, rows, uid):
    """Rows ``rows`` now belong to the sparse segment ``uid``, at its positions 0, 1, ..."""
    for i in range(rows.size):
        r = rows[i]
        owner[r] = uid
        pos[r] = i


@njit(cache=True, nogil=True)
def ids_to_bitmap(ids, lo, nbytes):
    """Bit ``i`` (of byte i // 8, least significant first) set for each row ``lo + i``."""
    bits = np.zeros(nbytes, np.uint8)
    for r in ids:
        i = r - lo
        bits[i >> 3] |= np.uint8(1 << (i & 7))
    return bits


@njit(cache=True, nogil=True)
def fill_chunk(
    owner, pos, slot, umin, dense, offsets, values, iteration, row_iters, merged, iters, took
):
    """Every row ``i`` of a chunk (``owner``, ``pos``, ``row_iters``: the chunk's slices)
    owned by one of the segments being merged (``s = slot[uid - umin] >= 0``), from that
    segment: ``values[offsets[s] + place]``, ``place`` its row in the segment; its saved
    iteration into ``iters`` and ``took[i]`` set. Other rows are left as they are. ``values``
    and ``merged`` are rows of bytes (any dtype, one machine code)."""
    width = values.shape[1]
    for i in range(owner.size):
        k = owner[i] - umin
        if k < 0 or k >= slot.size or slot[k] < 0:  # never saved, or not being merged
            continue
        s = slot[k]
        src = offsets[s] + (i if dense[s] else pos[i])
        for b in range(width):  # a loop: numba's slice copy costs more per row
            merged[i, b] = values[src, b]
        it = iteration[owner[i] + 1]
        iters[i] = row_iters[i] if it == -2 else it
        took[i] = True


def warm_up() -> None:
    """Load every kernel's machine code now (with the argument types the store passes)."""
    i32, i64 = np.zeros(2, np.int32), np.zeros(2, np.int64)
    count_owners(i32 - 1, False, i64, 0, 0, 0, np.zeros(1, np.int64), np.zeros(1, np.int64), 0)
    assign(i32.copy(), i32.copy(), i64, 0)
    increasing(i64)
    increasing(i64[::2])
    ids_to_bitmap(i64, 0, 1)
    rows = np.zeros((2, 4), np.uint8)
    took = np.zeros(2, np.bool_)
    fill_chunk(i32 - 1, i32, i64, 0, took[:1], i64, rows, i64, i64, rows, i64.copy(), took)


LOADED = True  # set last: a thread that finds this module half imported does not use it
