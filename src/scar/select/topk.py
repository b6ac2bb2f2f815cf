"""Exact top-k rows by score: ``top_k`` and its radix-select kernels (and ``warm_up``).

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

import numpy as np
from numba import njit, prange

from .common import _OPTS, _U, _as_float_array, _ctz, _threads

__all__ = ["top_k", "warm_up"]

_SMALL_N = 1 << 16  # below this many scores, top_k uses np.partition
_MIN_CHUNK = 1 << 16  # minimum number of scores per chunk in the radix kernels
_DIGIT = 16  # radix digit width in bits
_NB = 1 << _DIGIT
_LOW = _U(_NB - 1)


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
