"""The rows that changed most: change norms, and the selection a parameter-server shard makes
from the rows its updates touched (a dirty mask), then the snapshot of the chosen rows."""

from __future__ import annotations

import operator

import numpy as np
from numba import njit, prange

from .common import _OPTS, _U, _as_float_array, _check_pair, _ctz, _threads
from .topk import top_k

__all__ = [
    "gather_saving",
    "row_change_norms",
    "select_top_changed",
    "select_top_changed_among",
    "take_set",
    "take_top_changed",
    "top_k_sparse",
    "warm_up_rows",
]


@njit(parallel=True, fastmath={"reassoc", "contract"}, **_OPTS)
def _norms_kernel(live, saved, out):
    """out[i] = ||live[i] - saved[i]||_2, accumulated in float64 (reassociated: vectorized)."""
    n, w = live.shape
    if w == 1:  # |d| is exact and, unlike sqrt(d * d), vectorizes without the square root
        for i in prange(n):
            out[i] = abs(np.float64(live[i, 0]) - np.float64(saved[i, 0]))
        return
    for i in prange(n):
        acc = 0.0
        for j in range(w):
            d = np.float64(live[i, j]) - np.float64(saved[i, j])
            acc += d * d
        out[i] = np.sqrt(acc)


def row_change_norms(
    live: np.ndarray, saved: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """L2 norm of ``live[i] - saved[i]`` for every row of two (rows, width) float matrices.

    Inputs may be float32 or float64 (mixed dtypes are fine) and any strided views; the
    result is float32 if both inputs are float32, else float64.  A NaN in a row gives NaN for
    that row (which ``top_k`` then ranks first).  ``out``, if given, must be a 1-D array of
    the result dtype and length ``rows``; it is filled and returned.
    """
    live, saved = _check_pair(live, saved)
    dtype = np.result_type(live.dtype, saved.dtype)
    if out is None:
        out = np.empty(live.shape[0], dtype=dtype)
    elif out.shape != (live.shape[0],) or out.dtype != dtype or not out.flags.writeable:
        raise ValueError(
            f"out must be a writeable {dtype} array of shape ({live.shape[0]},), "
            f"got {out.dtype} {out.shape}"
        )
    with _threads(live.size):
        _norms_kernel(live, saved, out)
    return out


def select_top_changed(live: np.ndarray, saved: np.ndarray, k: int) -> np.ndarray:
    """Ids (ascending int64) of the ``k`` rows that changed most: ``top_k(row_change_norms)``."""
    return top_k(row_change_norms(live, saved), k)


def top_k_sparse(scores: np.ndarray, ids: np.ndarray, k: int, n: int) -> np.ndarray:
    """``top_k(full, k)`` of the length-``n`` vector ``full`` that holds ``scores`` at the
    sorted unique ``ids`` and ``0.0`` everywhere else, without building it: time O(ids.size
    + k), never O(n).

    The same rules as ``top_k``: ties (the zero rows included) go to the smallest row ids, NaN
    counts as ``+inf``.  Negative scores (which change norms never produce) fall back to a
    dense ``top_k``.
    """
    scores = _as_float_array("scores", scores, 1)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != scores.shape:
        raise ValueError(f"scores and ids differ in shape: {scores.shape} vs {ids.shape}")
    k, n = operator.index(k), operator.index(n)
    if k > 0 and k < n and (scores < 0).any():  # the zeros outside ids are not the smallest
        full = np.zeros(n, dtype=scores.dtype)
        full[ids] = scores
        return top_k(full, k)
    nz = scores != 0  # NaN included; -0.0 == +0.0 is a zero, as in top_k
    return _choose(ids[nz], scores[nz], k, n)[0]


@njit(**_OPTS)
def _fill_merge(taken, out):
    """out = the sorted union of ``taken`` (sorted ids) and the smallest ids not in it, as
    many as fill ``out``."""
    k, m = out.size, taken.size
    need = k - m
    i = j = 0
    for pos in range(k):
        if j < m and (need == 0 or taken[j] <= i):
            if taken[j] == i:
                i += 1
            out[pos] = taken[j]
            j += 1
        else:
            out[pos] = i
            i += 1
            need -= 1


@njit(inline="always", **_OPTS)
def _take_row(r, live, saved, ids, scores, score, m):
    """Row ``r`` taken from the mask: kept (``ids[m]``; with ``score``, only if its change
    ``|live[r, 0] - saved[r, 0]|`` is nonzero, NaN included, into ``scores[m]``). New ``m``."""
    if not score:
        ids[m] = r
        return m + 1
    d = abs(np.float64(live[r, 0]) - np.float64(saved[r, 0]))  # as _norms_kernel: exact
    if d == 0:
        return m
    ids[m] = r
    scores[m] = d
    return m + 1


@njit(**_OPTS)
def _scan(mask, words, live, saved, ids, scores, score):
    """Take the set bytes of ``mask`` (0/1 bytes; ``words``: its whole 8-byte words, as
    uint64s) in order, zeroing them, whole zero words skipped; each row taken goes through
    ``_take_row``. The number of rows kept."""
    m = 0
    for i in range(words.size):
        w = words[i]
        if w == 0:
            continue
        words[i] = 0
        base = i * 8
        while w != 0:  # one bit per set byte (its lowest): the byte is ctz / 8
            m = _take_row(base + np.int64(_ctz(w) >> 3), live, saved, ids, scores, score, m)
            w &= w - np.uint64(1)
    for r in range(words.size * 8, mask.size):
        if mask[r]:
            mask[r] = 0
            m = _take_row(r, live, saved, ids, scores, score, m)
    return m


_NO_TABLE = np.zeros((0, 1), np.float32)  # what take_set passes _scan for the tables


def _words(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raw = mask.view(np.uint8)
    return raw, raw[: raw.size // 8 * 8].view(np.uint64)


def take_set(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)`` of a C-contiguous 1-D bool array, then ``mask[:] = False``,
    in one compiled pass that skips the zero 8-byte words: 1.3-5.6x faster than the two
    (5.6x at 7 % set, a sparse-LR shard's dirty rows; benchmarks/dirty_scan.py)."""
    if mask.dtype != np.bool_ or mask.ndim != 1 or not mask.flags.c_contiguous:
        raise ValueError("mask must be a C-contiguous 1-D bool array")
    out = np.empty(int(np.count_nonzero(mask)), np.int64)
    _scan(*_words(mask), _NO_TABLE, _NO_TABLE, out, _NO_TABLE[:, 0], False)
    return out


def _changed_among(live, saved, rows) -> tuple[np.ndarray, np.ndarray]:
    """(ids, change norms) of the rows among ``rows`` (sorted unique) whose change is nonzero."""
    n = live.shape[0]
    if 2 * rows.size > n:  # most rows: one pass over the tables beats gathering them
        scores = row_change_norms(live, saved)
        ids = np.flatnonzero(scores != 0)  # NaN included
        return ids, scores[ids]
    scores = row_change_norms(live[rows], saved[rows])
    nz = scores != 0
    return rows[nz], scores[nz]


_CHOOSE_DIGIT = 11  # radix digit of _choose_kernel: a 2048-bin histogram stays in L1


@njit(**_OPTS)
def _choose_kernel(bits, ids, k, mag, inf, shift, chosen, still):
    """The ``k`` (0 < k <= ids.size) largest of the non-negative or NaN scores whose IEEE bits
    are ``bits`` (each row's ``ids[i]``, ascending): their ids into ``chosen`` (ascending),
    the others' and the NaN rows' into ``still`` (ascending); returns how many ``still`` got.
    The key of a score is ``min(bits & mag, inf)``: a non-negative float's bits keep its
    order, a NaN counts as +inf (``top_k``'s rule). A radix selection from the top digit
    (``shift``: the first digit's lowest bit) down, until the boundary digit's rows are taken
    whole or the keys are settled to the last bit; ties at the boundary go to the first
    rows, i.e. the smallest ids. One pass over the scores per digit, one to emit."""
    m = bits.size
    nb = 1 << _CHOOSE_DIGIT
    dmask = _U(nb - 1)
    hist = np.zeros(nb, np.int64)
    prefix = pmask = _U(0)
    r = k
    s = _U(shift)
    while True:
        hist[:] = 0
        for i in range(m):
            key = min(_U(bits[i]) & mag, inf)
            if key & pmask == prefix:
                hist[(key >> s) & dmask] += 1
        acc = 0
        b = nb - 1
        while acc + hist[b] < r:
            acc += hist[b]
            b -= 1
        r -= acc
        prefix |= _U(b) << s
        pmask |= dmask << s
        if hist[b] == r or s == 0:
            break
        s = s - _U(_CHOOSE_DIGIT) if s > _U(_CHOOSE_DIGIT) else _U(0)
    nc = ns = ties = 0
    for i in range(m):
        raw = _U(bits[i]) & mag
        top = min(raw, inf) & pmask
        if top > prefix or (top == prefix and ties < r):
            ties += top == prefix
            chosen[nc] = ids[i]
            nc += 1
            if raw > inf:  # a NaN row stays NaN once saved
                still[ns] = ids[i]
                ns += 1
        else:
            still[ns] = ids[i]
            ns += 1
    return ns


_KEYS = {  # per score width: (bits view, magnitude mask, +inf's bits, first digit's shift)
    4: (np.uint32, _U(0x7FFFFFFF), _U(0x7F800000), 31 - _CHOOSE_DIGIT),
    8: (np.uint64, _U(0x7FFFFFFFFFFFFFFF), _U(0x7FF0000000000000), 63 - _CHOOSE_DIGIT),
}


def _choose_top(ids, scores, k) -> tuple[np.ndarray, np.ndarray]:
    """(the ids of the ``k`` largest ``scores``, ties to the smallest ids, NaN counted as
    +inf; the ids not chosen and the NaN ones), for 0 < k <= ids.size, scores >= 0 or NaN."""
    ids, scores = np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(scores)
    view, mag, inf, shift = _KEYS[scores.dtype.itemsize]
    chosen = np.empty(k, np.int64)
    still = np.empty(ids.size, np.int64)
    ns = _choose_kernel(scores.view(view), ids, k, mag, inf, shift, chosen, still)
    return chosen, still[:ns]


def _choose(ids, scores, k, n, fill: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_changed`` of a table whose only rows of nonzero change are ``ids``
    (ascending) with changes ``scores`` (every other row: 0), and the ids whose change is
    still nonzero once the chosen rows are saved (the unchosen ones, and NaN, which stays).
    ``fill=False``: when fewer than ``k`` rows changed, only those (a row that equals its
    saved copy needs no saving)."""
    k, n = operator.index(k), operator.index(n)
    if k <= 0:
        return np.empty(0, np.int64), ids
    if k < n and ids.size >= k:  # the k-th largest change is > 0: every chosen row is in ids
        return _choose_top(ids, scores, k)
    nan = ids[np.isnan(scores)]
    if not fill:
        return ids.copy(), nan
    if k >= n:
        return np.arange(n, dtype=np.int64), nan
    # Every changed row is taken; the quota left goes to the smallest ids of change 0.
    out = np.empty(k, dtype=np.int64)
    _fill_merge(ids, out)
    return out, nan


def select_top_changed_among(
    live: np.ndarray, saved: np.ndarray, k: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_changed(live, saved, k)`` when only ``rows`` (sorted unique ids) may differ
    from their saved copy (every other row has ``live == saved``, a change norm of 0), reading
    only those rows.  Returns (the chosen ids, ascending; the ids among ``rows`` whose change
    is still nonzero once the chosen rows are saved: the unchosen ones that changed, and the
    rows whose change is NaN, which stays NaN after saving).
    """
    live, saved = _check_pair(live, saved)
    ids, scores = _changed_among(live, saved, np.asarray(rows, dtype=np.int64))
    return _choose(ids, scores, k, live.shape[0])


def take_top_changed(
    mask: np.ndarray, live: np.ndarray, saved: np.ndarray, k: int, fill: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_changed_among(live, saved, k, take_set(mask))``: the rows set in ``mask``
    (a C-contiguous bool array, one per row, cleared here) are the only ones that may differ
    from their saved copy. A one-column table is scanned, scored and filtered in one compiled
    pass over the mask (no gathered copies of the rows); wider ones are gathered and scored
    by ``row_change_norms``. If the choice fails, the changed rows are set in ``mask`` again
    (nothing was saved; the unchanged rows equal their saved copy and need no tracking).
    ``fill=False``: fewer than ``k`` rows when fewer changed (``_choose``)."""
    live, saved = _check_pair(live, saved)
    if mask.dtype != np.bool_ or mask.shape != (live.shape[0],) or not mask.flags.c_contiguous:
        raise ValueError(f"mask must be a C-contiguous bool array of {live.shape[0]} rows")
    if live.shape[1] == 1:
        count = int(np.count_nonzero(mask))
        ids = np.empty(count, np.int64)
        scores = np.empty(count, np.result_type(live.dtype, saved.dtype))
        m = _scan(*_words(mask), live, saved, ids, scores, True)
        ids, scores = ids[:m], scores[:m]
    else:
        rows = take_set(mask)
        try:
            ids, scores = _changed_among(live, saved, rows)
        except BaseException:
            mask[rows] = True
            raise
    try:
        return _choose(ids, scores, k, live.shape[0], fill)
    except BaseException:
        mask[ids] = True
        raise


@njit(**_OPTS)
def _gather_saving(live, ids, saved, out):
    """out[i] = saved[ids[i]] = live[ids[i]]; -1 if every id is a row, else the first bad one's
    position (nothing written then)."""
    n, w = live.shape
    for i in range(ids.size):
        if ids[i] < 0 or ids[i] >= n:
            return i
    for i in range(ids.size):
        r = ids[i]
        for j in range(w):
            v = live[r, j]
            out[i, j] = v
            saved[r, j] = v
    return -1


def gather_saving(live: np.ndarray, ids: np.ndarray, saved: np.ndarray) -> np.ndarray:
    """``values = live[ids]; saved[ids] = values; return values`` - the rows a checkpoint saves
    and its record of what they were saved as - in one compiled pass for float32 / float64
    tables (numpy's two indexing passes otherwise). Ids must be rows of ``live`` (IndexError,
    and nothing written, if not); a repeated id is written once per occurrence."""
    ids = np.asarray(ids)
    fast = (
        ids.dtype == np.int64
        and ids.ndim == 1
        and live.dtype in (np.float32, np.float64)
        and saved.dtype == live.dtype
        and live.ndim == 2
        and saved.shape == live.shape
        and live.flags.c_contiguous
        and saved.flags.c_contiguous
        and saved.flags.writeable
    )
    if not fast:
        values = live[ids]
        saved[ids] = values
        return values
    out = np.empty((ids.size, live.shape[1]), live.dtype)
    bad = _gather_saving(live, ids, saved, out)
    if bad >= 0:
        raise IndexError(f"row {ids[bad]} is out of bounds for a table of {live.shape[0]} rows")
    return out


def warm_up_rows(dtype, width: int) -> None:
    """Compile, or load from numba's cache, the kernels a shard's priority save runs on a
    table of ``dtype`` rows of ``width`` columns besides the radix ones (``warm_up``): its
    dirty-mask scan (with the changes' scores for one column, the gathered norms for more),
    the choice among more changed rows than the quota, the filling of a quota larger than
    the changed rows, and the snapshot."""
    live = np.zeros((9, width), dtype)
    saved = live.copy()
    saved[0] = 1  # one changed row, a quota of 2: the rest of it filled with unchanged rows
    take_top_changed(np.ones(9, bool), live, saved, 2)
    saved[:3] = 1  # three changed rows, a quota of 2: the radix choice among them
    take_top_changed(np.ones(9, bool), live, saved, 2)
    gather_saving(live, np.arange(2, dtype=np.int64), saved)
