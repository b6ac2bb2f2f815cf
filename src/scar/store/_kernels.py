"""Compiled loops for the live set and row bitmaps of large sparse saves.

Imported on first use only (``index.py``, ``codec.py``): importing numba and loading the cached
machine code costs a process ~0.4 s, which only a writer of large sparse saves (a priority
checkpoint of 10^5+ rows: ~1.5 ms less CPU per save at 10^6 rows) pays back.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_owners(owner, rows, lo, counts):
    """counts[u - lo] += rows (of ``rows``) owned by uid u: one pass, no temporaries."""
    for r in rows:
        o = owner[r]
        if o >= 0:
            counts[o - lo] += 1


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
