"""Hot-path kernels of prioritized checkpoints: per-row change norms and exact top-k rows.

``row_change_norms(live, saved)`` is the L2 norm of ``live[i] - saved[i]`` for every row, in one
parallel numba pass over both matrices (no full-size temporary; squares summed in float64; the
result is float32 only if both inputs are).  ``select_top_changed`` = ``top_k`` of those norms.

A parameter-server shard knows which rows its updates touched: ``take_top_changed(mask,
live, saved, k)`` gives the same rows as ``select_top_changed`` reading only the rows set in a
dirty mask (one compiled pass for one-column tables), and ``gather_saving`` snapshots the
chosen rows and records them as saved in one pass.

``top_k(scores, k)`` returns the int64 ids of the ``k`` rows with the largest scores, sorted
ascending.  It is exact: the same set as the first ``k`` rows of a stable sort by
``(-score, row id)``.

* Tie rule: among rows whose score equals the k-th largest, the *smallest* row ids are taken
  (``-0.0`` equals ``+0.0``).
* NaN rule: NaN (of either sign) counts as ``+inf``: it ties with ``+inf`` (broken by row id),
  so rows whose values were destroyed are selected first.  Negative scores, which change norms
  never produce, are ordered correctly too (on a slower path).
* ``k <= 0`` gives an empty array, ``k >= n`` gives ``arange(n)``.

Algorithm (``n >= _SMALL_N``; smaller inputs use ``np.partition`` and the same tie rule): every
float maps to an unsigned key of the same order (IEEE bits of non-negative floats already compare
like the floats; negatives are mirrored; NaN takes the key of +inf), and a radix select runs on
16-bit digits over chunks of rows (up to 4 per thread, in parallel):

1. per-chunk histograms of the top digit (of the raw bits, when nothing is negative) give the
   boundary digit ``b`` that holds the k-th largest key;
2. one pass stores, per 64-row block, bit masks of the rows with digit ``> b`` and ``== b`` and
   gathers the bits of the latter (the candidates, ~n/256 for uniform scores) in row order;
3. the candidates are settled digit by digit until the boundary digit is taken whole; the ties
   left at the end are handed to the chunks in order as quotas (lowest row ids first);
4. a compaction walks the masks and writes the chosen ids, already in ascending order.

Only steps 1-2 read all scores (two memory passes); inputs under ``_PARALLEL_N`` values run on
the calling thread, where waking the thread pool would cost more than it saves.  Heavy ties (all equal, few distinct values)
just make step 3 scan more candidates: linear, never quadratic.  Time O(n / threads + chunks *
65536); extra memory: the k output ids, n / 4 bytes of masks, the candidates' bits and
``chunks * 65536`` int64 counters.
"""

from __future__ import annotations

import operator
from contextlib import contextmanager

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, set_num_threads
from numba.core import types
from numba.extending import intrinsic

__all__ = [
    "gather_saving",
    "row_change_norms",
    "select_top_changed",
    "select_top_changed_among",
    "single_threaded",
    "take_set",
    "take_top_changed",
    "top_k",
    "top_k_sparse",
    "warm_up",
    "warm_up_rows",
]

_SMALL_N = 1 << 16  # below this many scores, top_k uses np.partition
_PARALLEL_N = 1 << 20  # below this many values, kernels run on the calling thread only
_MIN_CHUNK = 1 << 16  # minimum number of scores per chunk in the radix kernels
_DIGIT = 16  # radix digit width in bits
_NB = 1 << _DIGIT
_U = np.uint64
_LOW = _U(_NB - 1)
_OPTS = {"cache": True, "nogil": True}


@njit(**_OPTS)
def _key(b, kc):
    """Order-preserving unsigned key of IEEE bits ``b``: NaN -> +inf, -0.0 -> +0.0.

    ``kc = (neg, sign bit, magnitude mask, bits of +inf)``; ``neg=False`` is a fast form,
    valid when no negative non-NaN value is present.
    """
    neg, sign, mag, inf = kc
    m = b & mag
    if neg and b & sign and m <= inf:
        return sign - m
    return sign + min(m, inf)


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


@intrinsic
def _ctz(typingctx, x):
    """Count trailing zero bits of a non-zero uint64 (LLVM ``cttz``)."""

    def codegen(context, builder, sig, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


# The kernels index chunk slices from 0 so that numba can drop negative-index handling and
# LLVM vectorizes the fixed-length 64-row loops.


@njit(parallel=True, **_OPTS)
def _raw_histogram(bits, lo, hi, hist, shift):
    """hist[c, d]: rows of chunk c whose raw top digit (bits >> shift) is d."""
    for c in prange(lo.size):
        h = hist[c]
        h[:] = 0
        src = bits[lo[c] : hi[c]]
        for i in range(src.size):
            h[src[i] >> shift] += 1


@njit(parallel=True, **_OPTS)
def _histogram(bits, lo, hi, hist, hmask, prefix, shift, kc):
    """hist[c, d]: rows of chunk c whose key matches ``prefix`` on ``hmask`` with digit d."""
    for c in prange(lo.size):
        h = hist[c]
        h[:] = 0
        src = bits[lo[c] : hi[c]]
        for i in range(src.size):
            key = _key(src[i], kc)
            if key & hmask == prefix:
                h[(key >> shift) & _LOW] += 1


@njit(**_OPTS)
def _masks(src, base, m, top, shift, kc):
    """Bit masks of the rows src[base:base+m] (m <= 64) whose key digit is > and == top."""
    wg = we = _U(0)
    for j in range(m):
        p = _key(src[base + j], kc) >> shift
        wg |= _U(p > top) << _U(j)
        we |= _U(p == top) << _U(j)
    return wg, we


@njit(**_OPTS)
def _gather(we, src, base, cand, jc):
    """Append src[base + j] to cand[jc:] for each set bit j of we; return the new jc."""
    while we:
        cand[jc] = src[base + np.int64(_ctz(we))]
        jc += 1
        we &= we - _U(1)
    return jc


@njit(parallel=True, **_OPTS)
def _split(bits, blocks, top, shift, kc, gt, eq, cbits, coff):
    """Per 64-row block: bit masks of digit > top (``gt``) and == top (``eq``); the bits of
    the ``eq`` rows of chunk c are gathered, in row order, into ``cbits[coff[c]:]``."""
    for c in prange(blocks.size - 1):
        b0, b1 = blocks[c], blocks[c + 1]
        src = bits[b0 * 64 : b1 * 64]
        g, e, cand = gt[b0:b1], eq[b0:b1], cbits[coff[c] : coff[c + 1]]
        jc = 0
        full = src.size // 64
        for blk in range(full):
            base = blk * 64
            wg = we = _U(0)
            for j in range(64):  # fixed trip count: vectorized (the same as _masks)
                p = _key(src[base + j], kc) >> shift
                wg |= _U(p > top) << _U(j)
                we |= _U(p == top) << _U(j)
            g[blk] = wg
            e[blk] = we
            jc = _gather(we, src, base, cand, jc)
        if full < b1 - b0:  # the last, partial block
            base = full * 64
            g[full], e[full] = _masks(src, base, src.size - base, top, shift, kc)
            _gather(e[full], src, base, cand, jc)


@njit(parallel=True, **_OPTS)
def _emit(gt, eq, blocks, cbits, coff, offsets, quota, top, shift, kc, out):
    """Write, in row order, the ``gt`` rows and the candidates (``eq`` rows) whose key prefix
    beats ``top``, plus each chunk's ``quota`` of candidates tied with ``top``."""
    for c in prange(blocks.size - 1):
        b0, b1 = blocks[c], blocks[c + 1]
        g, e, cand = gt[b0:b1], eq[b0:b1], cbits[coff[c] : coff[c + 1]]
        dst = out[offsets[c] : offsets[c + 1]]
        q = quota[c]
        pos = t = ties = 0
        for blk in range(b1 - b0):
            w = g[blk]
            we = e[blk]
            while we:
                low = we & (~we + _U(1))
                p = _key(cand[t], kc) >> shift
                t += 1
                if p > top or (p == top and ties < q):
                    w |= low
                ties += p == top
                we ^= low
            base = (b0 + blk) * 64
            while w:
                dst[pos] = base + np.int64(_ctz(w))
                pos += 1
                w &= w - _U(1)


@njit(**_OPTS)
def _remap(hist, infd):
    """Turn raw top-digit counts into key-digit counts, given no negative non-NaN values: the
    key digit of a non-negative value is half + raw digit, all NaNs join the digit of +inf."""
    half = _NB // 2
    for c in range(hist.shape[0]):
        h = hist[c]
        nan = h[infd:half].sum() + h[half + infd + 1 :].sum()
        h[half : half + infd] = h[:infd]
        h[half + infd] = nan
        h[:half] = 0
        h[half + infd + 1 :] = 0


@njit(**_OPTS)
def _boundary(hist, r, above):
    """Digit b holding the r-th largest key: returns (b, rows above b, rows at b) and adds
    each chunk's rows above b to ``above``."""
    total = hist.sum(axis=0)
    acc = 0
    b = _NB - 1
    while acc + total[b] < r:
        acc += total[b]
        b -= 1
    for c in range(hist.shape[0]):
        above[c] += hist[c, b + 1 :].sum()
    return b, acc, total[b]


def _top_k_radix(scores: np.ndarray, k: int, nchunks: int) -> np.ndarray:
    """Radix-select kernel of ``top_k`` for 0 < k < n (contiguous native float32/float64)."""
    n = scores.size
    nbits = 8 * scores.dtype.itemsize
    ut = np.uint32 if nbits == 32 else np.uint64
    bits = scores.view(ut)
    sign, mag = ut(1 << (nbits - 1)), ut((1 << (nbits - 1)) - 1)
    inf = scores.dtype.type(np.inf).view(ut)
    nblocks = -(-n // 64)
    blocks = np.arange(nchunks + 1, dtype=np.int64) * nblocks // nchunks
    lo, hi = np.minimum(blocks[:-1] * 64, n), np.minimum(blocks[1:] * 64, n)
    hist = np.empty((nchunks, _NB), dtype=np.int64)
    shift = nbits - _DIGIT
    # Level 1 counts raw top digits (the cheapest loop) and maps them to key digits, unless
    # negative values need the full key transform.
    _raw_histogram(bits, lo, hi, hist, ut(shift))
    infd = int(inf) >> shift
    neg = bool(hist[:, _NB // 2 : _NB // 2 + infd + 1].any())  # negative non-NaN values
    kc = (neg, sign, mag, inf)
    if neg:
        _histogram(bits, lo, hi, hist, ut(0), ut(0), ut(shift), kc)
    else:
        _remap(hist, infd)
    above = np.zeros(nchunks, dtype=np.int64)  # per chunk: rows above the boundary
    b, acc, at = _boundary(hist, k, above)
    r = k - acc  # rows still to take among those sharing the boundary prefix
    # Split: bit masks of rows above / in the boundary digit; candidates' bits gathered.
    coff = np.zeros(nchunks + 1, dtype=np.int64)
    np.cumsum(hist[:, b], out=coff[1:])
    gt = np.empty(nblocks, dtype=np.uint64)
    eq = np.empty(nblocks, dtype=np.uint64)
    cbits = np.empty(coff[-1], dtype=ut)
    _split(bits, blocks, ut(b), ut(shift), kc, gt, eq, cbits, coff)
    # Settle the candidates digit by digit until the boundary digit is taken whole.
    prefix, hmask = b << shift, (_NB - 1) << shift
    while at != r and shift > 0:
        shift -= _DIGIT
        with _threads(cbits.size):
            _histogram(cbits, coff[:-1], coff[1:], hist, ut(hmask), ut(prefix), ut(shift), kc)
        b, acc, at = _boundary(hist, r, above)
        r -= acc
        prefix |= b << shift
        hmask |= (_NB - 1) << shift
    ties = hist[:, b]  # per chunk: candidates tied at the threshold; the first r are taken
    quota = np.clip(r - (np.cumsum(ties) - ties), 0, ties)
    offsets = np.zeros(nchunks + 1, dtype=np.int64)
    np.cumsum(above + quota, out=offsets[1:])
    out = np.empty(k, dtype=np.int64)
    top = ut(prefix >> shift)
    _emit(gt, eq, blocks, cbits, coff, offsets, quota, top, ut(shift), kc, out)
    return out


@contextmanager
def single_threaded():
    """Run this thread's numba kernels on one thread (numba's thread count is per thread):
    for callers that share few cores with other busy processes, where a parallel kernel only
    fights them (a parameter-server shard selecting rows while its workers compute)."""
    old = get_num_threads()
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(old)


@contextmanager
def _threads(size: int):
    """Run numba kernels on one thread for small inputs: waking the pool costs more then."""
    if size >= _PARALLEL_N or get_num_threads() == 1:
        yield get_num_threads()
        return
    old = get_num_threads()
    set_num_threads(1)
    try:
        yield 1
    finally:
        set_num_threads(old)


def _as_float_array(name: str, a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise ValueError(f"{name} must be float32 or float64, got {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _check_pair(live: np.ndarray, saved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    live = _as_float_array("live", live, 2)
    saved = _as_float_array("saved", saved, 2)
    if live.shape != saved.shape:
        raise ValueError(f"live and saved shapes differ: {live.shape} vs {saved.shape}")
    return live, saved


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


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Int64 ids of the ``k`` largest scores, sorted ascending (see the module docstring).

    Ties at the boundary go to the smallest row ids; NaN counts as ``+inf``.  Non-contiguous
    or non-native-endian input is copied first.
    """
    scores = _as_float_array("scores", scores, 1)
    k = operator.index(k)
    n = scores.size
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if n < _SMALL_N:  # exact selection around the k-th largest value found by np.partition
        vals = np.where(np.isnan(scores), np.inf, scores)
        kth = np.partition(vals, n - k)[n - k]
        chosen = vals > kth
        need = k - int(np.count_nonzero(chosen))
        chosen[np.flatnonzero(vals == kth)[:need]] = True  # the ties with the smallest ids
        # one mask, read once in order: the ids come out sorted (sorting the concatenated
        # ids instead took over half of this path's time at 40000 scores)
        return np.flatnonzero(chosen).astype(np.int64, copy=False)
    with _threads(n) as nthreads:
        nchunks = max(1, min(4 * nthreads, n // _MIN_CHUNK))
        return _top_k_radix(np.ascontiguousarray(scores), k, nchunks)


def warm_up(dtype) -> None:
    """Compile, or load from numba's cache, every kernel a selection over scores of ``dtype``
    (float32 or float64) runs - the radix path of large inputs, its settling of tied digits
    and its path for negative scores included - so that the first large selection does not
    pay for it: compiling them costs seconds once per installation (7 s at a sparse-LR shard's
    first priority save, on an iteration's critical path, before this was called at start)."""
    ut = np.uint32 if np.dtype(dtype).itemsize == 4 else np.uint64
    # distinct keys sharing their top digit: the boundary digit must be settled digit by digit
    scores = (np.arange(_SMALL_N, dtype=ut) + np.dtype(dtype).type(1.0).view(ut)).view(dtype)
    top_k(scores, _SMALL_N // 3)
    scores[0] = -1.0  # a negative score: the full key transform
    top_k(scores, _SMALL_N // 3)


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


def _choose(ids, scores, k, n) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_changed`` of a table whose only rows of nonzero change are ``ids``
    (ascending) with changes ``scores`` (every other row: 0), and the ids whose change is
    still nonzero once the chosen rows are saved (the unchosen ones, and NaN, which stays)."""
    k, n = operator.index(k), operator.index(n)
    if k <= 0:
        return np.empty(0, np.int64), ids
    if k < n and ids.size >= k:  # the k-th largest change is > 0: every chosen row is in ids
        return _choose_top(ids, scores, k)
    nan = ids[np.isnan(scores)]
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
    mask: np.ndarray, live: np.ndarray, saved: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_changed_among(live, saved, k, take_set(mask))``: the rows set in ``mask``
    (a C-contiguous bool array, one per row, cleared here) are the only ones that may differ
    from their saved copy. A one-column table is scanned, scored and filtered in one compiled
    pass over the mask (no gathered copies of the rows); wider ones are gathered and scored
    by ``row_change_norms``. If the choice fails, the changed rows are set in ``mask`` again
    (nothing was saved; the unchanged rows equal their saved copy and need no tracking)."""
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
        return _choose(ids, scores, k, live.shape[0])
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
