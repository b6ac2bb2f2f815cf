"""Tests of scar.select: exact top-k with the row-id tie rule, NaN rule, and change norms."""

import numpy as np
import pytest

from scar import select
from scar.policies import PriorityPolicy
from scar.select import (
    changed,
    row_change_norms,
    select_top_changed,
    select_top_changed_among,
    single_threaded,
    take_set,
    take_top_changed,
    top_k,
    top_k_sparse,
    topk,
)

SIZES = [1, 2, 17, 1000, 100_003]
DTYPES = [np.float32, np.float64]


def ranking(scores: np.ndarray) -> np.ndarray:
    """Row ids in the order of a stable sort by (-score, row id), NaN counted as +inf."""
    vals = np.where(np.isnan(scores), np.inf, scores).astype(np.float64)
    return np.lexsort((np.arange(scores.size), -vals))


def reference(scores: np.ndarray, k: int, order: np.ndarray | None = None) -> np.ndarray:
    """The expected top_k: the first k rows of ``ranking(scores)``, sorted by row id."""
    order = ranking(scores) if order is None else order
    return np.sort(order[: max(k, 0)]).astype(np.int64)


def ks_for(n: int) -> list[int]:
    return sorted({-1, 0, 1, 2, n // 16, n // 8, n // 2, n - 1, n, n + 5})


@pytest.fixture(params=["sort", "radix"])
def path(request, monkeypatch):
    """Run each top_k test through both the small-input sort path and the radix kernel."""
    monkeypatch.setattr(topk, "_SMALL_N", 1 << 62 if request.param == "sort" else 0)
    return request.param


def check(scores: np.ndarray) -> None:
    order = ranking(scores)
    for k in ks_for(scores.size):
        got = top_k(scores, k)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, reference(scores, k, order), err_msg=f"k={k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_random(path, n, dtype):
    check(np.random.default_rng(n).random(n).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_heavy_ties(path, n, dtype):
    rng = np.random.default_rng(n + 1)
    check(np.ones(n, dtype=dtype))  # all equal
    check(np.zeros(n, dtype=dtype))  # all unchanged rows
    check(rng.integers(0, 3, n).astype(dtype))  # values from {0, 1, 2}
    many_zeros = rng.random(n).astype(dtype)
    many_zeros[rng.random(n) < 0.9] = 0.0
    check(many_zeros)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_in_low_bits(path, dtype):
    """Values differing only in the last mantissa bits exercise every radix level."""
    rng = np.random.default_rng(7)
    n = 100_003
    one = dtype(1.0)
    scores = (one + rng.integers(0, 40, n) * np.spacing(one)).astype(dtype)
    check(scores)
    check(np.full(n, np.spacing(dtype(0)), dtype=dtype))  # all equal denormals


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [17, 1000, 100_003])
def test_nan_rows_first(path, n, dtype):
    rng = np.random.default_rng(3)
    scores = rng.random(n).astype(dtype)
    nan_rows = np.sort(rng.choice(n, size=max(1, n // 100), replace=False))
    scores[nan_rows[::2]] = np.nan
    scores[nan_rows[1::2]] = -np.nan  # sign bit set, as produced by inf - inf on x86
    got = top_k(scores, nan_rows.size)
    np.testing.assert_array_equal(got, nan_rows)
    check(scores)
    scores[rng.integers(0, n, 5)] = np.inf  # NaN ties with +inf, broken by row id
    check(scores)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_and_signed_zero(path, dtype):
    """Out of the norm domain but still exact: negatives, -inf, and -0.0 == +0.0."""
    rng = np.random.default_rng(11)
    n = 100_003
    scores = rng.standard_normal(n).astype(dtype)
    scores[::7] = -0.0
    scores[::11] = 0.0
    scores[::13] = -np.inf
    scores[::17] = np.nan
    check(scores)
    check(-np.abs(scores))


@pytest.mark.parametrize("nchunks", [1, 2, 3, 7, 19])
def test_chunk_quotas(nchunks):
    """Many chunks (some empty): tie quotas and output offsets spread across them."""
    rng = np.random.default_rng(nchunks)
    for n in (65, 130, 5000):
        signed = rng.standard_normal(n).astype(np.float32)
        signed[::9] = np.nan
        for scores in (rng.integers(0, 3, n).astype(np.float32), np.ones(n), signed):
            order = ranking(scores)
            for k in (1, n // 3, n // 2, n - 1):
                with topk._threads(0):  # one thread: tiny inputs, many calls
                    got = topk._top_k_radix(scores, k, nchunks)
                np.testing.assert_array_equal(got, reference(scores, k, order))


def test_top_k_input_handling():
    scores = np.random.default_rng(0).random(10_000)
    strided = scores[::2]
    np.testing.assert_array_equal(top_k(strided, 100), reference(strided, 100))
    big_endian = scores.astype(">f8")
    np.testing.assert_array_equal(top_k(big_endian, 100), reference(scores, 100))
    assert top_k(np.empty(0, dtype=np.float32), 3).size == 0
    np.testing.assert_array_equal(top_k(scores, np.int64(5)), reference(scores, 5))
    with pytest.raises(ValueError, match="1-D"):
        top_k(scores.reshape(100, 100), 5)
    with pytest.raises(ValueError, match="float32 or float64"):
        top_k(np.arange(10), 5)
    with pytest.raises(TypeError):
        top_k(scores, 2.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 3, 64])
def test_row_change_norms(dtype, width):
    rng = np.random.default_rng(width)
    live = rng.standard_normal((1001, width)).astype(dtype)
    saved = live + rng.standard_normal((1001, width)).astype(dtype) * 0.1
    saved[::5] = live[::5]  # unchanged rows: exactly zero
    got = row_change_norms(live, saved)
    assert got.dtype == dtype and got.shape == (1001,)
    expected = np.linalg.norm(live.astype(np.float64) - saved.astype(np.float64), axis=1)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol)
    assert np.all(got[::5] == 0)
    out = np.empty(1001, dtype=dtype)
    assert row_change_norms(live, saved, out=out) is out
    np.testing.assert_array_equal(out, got)


def test_row_change_norms_views_dtypes_and_errors():
    rng = np.random.default_rng(5)
    big = rng.random((200, 10))
    live, saved = big[:100, :6], big[100:, 2:8]  # non-contiguous views work
    expected = np.linalg.norm(live - saved, axis=1)
    np.testing.assert_allclose(row_change_norms(live, saved), expected, rtol=1e-12)
    np.testing.assert_allclose(row_change_norms(live.T.T[::1], saved[::-1][::-1]), expected)
    mixed = row_change_norms(live.astype(np.float32), saved)
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, np.linalg.norm(live.astype(np.float32) - saved, axis=1))
    nan_live = live.copy()
    nan_live[3, 1] = np.nan
    norms = row_change_norms(nan_live, saved)
    assert np.isnan(norms[3]) and not np.isnan(np.delete(norms, 3)).any()
    assert top_k(norms, 1)[0] == 3
    with pytest.raises(ValueError, match="shapes differ"):
        row_change_norms(live, saved[:50])
    with pytest.raises(ValueError, match="2-D"):
        row_change_norms(live[:, 0], saved[:, 0])
    with pytest.raises(ValueError, match="float32 or float64"):
        row_change_norms(live.astype(np.int64), saved.astype(np.int64))
    with pytest.raises(ValueError, match="out must be"):
        row_change_norms(live, saved, out=np.empty(100, dtype=np.float32))


def test_select_top_changed():
    rng = np.random.default_rng(9)
    live = rng.standard_normal((50_000, 4)).astype(np.float32)
    saved = live.copy()
    changed = np.sort(rng.choice(50_000, size=700, replace=False))
    saved[changed] += 1.0 + rng.random((700, 4)).astype(np.float32)
    np.testing.assert_array_equal(select_top_changed(live, saved, 700), changed)
    got = select_top_changed(live, saved, 1000)  # 300 ties at zero change: lowest ids
    unchanged = np.setdiff1d(np.arange(50_000), changed)[:300]
    np.testing.assert_array_equal(got, np.union1d(changed, unchanged))


def _sparse_cases(rng, n):
    """(scores at ids, ids): few/many ids, ties with the implicit zeros, NaN, small values."""
    for frac in (0.0, 0.001, 0.05, 0.3, 0.9, 1.0):
        ids = np.flatnonzero(rng.random(n) < frac)
        yield rng.random(ids.size), ids
        yield rng.integers(0, 3, ids.size).astype(np.float32), ids  # zeros among the ids
        nan = rng.random(ids.size)
        nan[rng.random(ids.size) < 0.1] = np.nan
        yield nan, ids
        yield np.full(ids.size, 1e-30), ids  # tiny but nonzero: above every implicit zero


@pytest.mark.parametrize("n", [1, 7, 1000, 70_001])
def test_top_k_sparse_is_top_k_of_the_dense_vector(n):
    rng = np.random.default_rng(n)
    for scores, ids in _sparse_cases(rng, n):
        dense = np.zeros(n, dtype=scores.dtype)
        dense[ids] = scores
        order = ranking(dense)
        for k in ks_for(n):
            got = top_k_sparse(scores, ids, k, n)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, reference(dense, k, order), err_msg=f"k={k}")
    signed = rng.standard_normal(50)  # negative scores: the zeros are not the smallest
    ids = np.sort(rng.choice(n, size=min(50, n), replace=False))
    dense = np.zeros(n)
    dense[ids] = signed[: ids.size]
    for k in ks_for(n):
        np.testing.assert_array_equal(
            top_k_sparse(signed[: ids.size], ids, k, n), reference(dense, k)
        )
    with pytest.raises(ValueError, match="differ in shape"):
        top_k_sparse(np.ones(3), np.arange(2), 1, n)


@pytest.mark.parametrize("width", [1, 3, 16])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tracked_selection_equals_the_priority_policy_over_many_saves(width, dtype):
    """The shard's incremental selection (only rows touched since their last save are read)
    chooses, save after save, exactly what PriorityPolicy.select chooses over the whole table
    (select_top_changed): sparse updates, heavy ties at zero, NaN rows, k above and below the
    number of changed rows."""
    rng = np.random.default_rng(width)
    n = 20_000
    live = rng.standard_normal((n, width)).astype(dtype)
    saved = live.copy()
    dirty = np.zeros(n, bool)  # rows that may differ from saved (none yet)
    policy = PriorityPolicy(period=16, fraction=0.125)
    for it in range(2, 80, 2):
        for _ in range(2):  # two sparse iterations between saves, Zipf-like hot rows
            rows = np.unique(np.minimum(rng.zipf(1.3, size=rng.integers(0, 4000)), n) - 1)
            if it % 14 == 0:
                rows = np.unique(np.r_[rows, rng.integers(0, n, 9000)])  # a burst
            step = rng.standard_normal((rows.size, width)).astype(dtype) * 0.01
            step[rng.random(rows.size) < 0.2] = 0  # touched but unchanged
            live[rows] -= step
            dirty[rows] = True
        if it == 30:
            live[[5, 17, 4000]] = np.nan  # destroyed rows: picked first, then forever
            dirty[[5, 17, 4000]] = True
        k = policy.rows_per_checkpoint(n, it) * (3 if it % 10 == 0 else 1)
        expected = policy.select("w", live, saved, it)
        if k != policy.rows_per_checkpoint(n, it):
            expected = select_top_changed(live, saved, k)
        with single_threaded():
            got, still = select_top_changed_among(live, saved, k, np.flatnonzero(dirty))
            mask = dirty.copy()
            taken, left = take_top_changed(mask, live, saved, k)  # the shard's: scans the mask
        np.testing.assert_array_equal(got, expected, err_msg=f"iteration {it}")
        np.testing.assert_array_equal(taken, expected, err_msg=f"iteration {it}")
        np.testing.assert_array_equal(left, still)
        assert not mask.any()
        every, _ = select_top_changed_among(live, saved, k, np.arange(n))  # the dense path
        np.testing.assert_array_equal(every, expected)
        saved[got] = live[got]  # what Checkpointer._save does
        dirty[:] = False
        dirty[still] = True
        changed = row_change_norms(live, saved) != 0  # NaN != 0 too
        assert not (changed & ~dirty).any(), "a changed row left the tracked set"


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 1001, 262147])
@pytest.mark.parametrize("p", [0.0, 0.01, 0.07, 0.5, 1.0])
def test_take_set_is_flatnonzero_then_clear(n, p):
    """The dirty-mask scan (whole zero words skipped, one bit per set byte) returns exactly
    np.flatnonzero and leaves the mask all False; sizes off the 8-byte words included."""
    mask = np.random.default_rng(n).random(n) < p
    expected = np.flatnonzero(mask)
    got = take_set(mask)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert not mask.any()


def test_take_set_refuses_what_it_cannot_scan():
    for bad in (np.zeros(8, np.uint8), np.zeros((2, 4), bool), np.zeros(16, bool)[::2]):
        with pytest.raises(ValueError, match="C-contiguous 1-D bool"):
            take_set(bad)


def test_single_threaded_is_scoped():
    from numba import get_num_threads

    before = get_num_threads()
    with single_threaded():
        assert get_num_threads() == 1
    assert get_num_threads() == before


RADIX_KERNELS = ("_raw_histogram", "_histogram", "_remap", "_boundary", "_split", "_emit")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_warm_up_compiles_every_kernel_of_a_large_selection(dtype):
    """A shard calls ``warm_up`` before it serves, so that its first priority save does not
    compile (or load) the radix kernels on an iteration's critical path. In a fresh process:
    before it, no radix kernel has a signature for these scores; after it, each has one, and
    a large selection (with ties to settle and a negative score) adds none."""
    import json
    import subprocess
    import sys

    code = f"""
import json
import numpy as np
from scar import select
from scar.select import topk
names = {RADIX_KERNELS!r}
def sigs():
    return [len(getattr(topk, n).signatures) for n in names]
before = sigs()
select.warm_up(np.{dtype})
after = sigs()
s = np.random.default_rng(0).random(1 << 17).astype(np.{dtype})
s[:1000] = 0.5
s[7] = -1.0
got = select.top_k(s, 5000)
assert np.array_equal(got, np.sort(np.argsort(-s, kind="stable")[:5000]))
print(json.dumps([before, after, sigs()]))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, later = json.loads(run.stdout)
    assert before == [0] * len(RADIX_KERNELS)
    assert after == [1] * len(RADIX_KERNELS)
    assert later == after


@pytest.mark.parametrize("n", [1, 7, 9, 63, 1001])
@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64)])
def test_take_top_changed_is_the_selection_over_the_whole_table(n, width, dtypes):
    """The shard's selection from its dirty mask (one compiled pass for one-column tables,
    the mask's tail past its 8-byte words included) equals select_top_changed over every
    row: untouched rows, touched-but-unchanged rows, -0.0 against +0.0, NaN rows, k from 0
    to past n; it clears the mask and returns the rows still changed after the save."""
    rng = np.random.default_rng(n * width)
    saved = rng.standard_normal((n, width)).astype(dtypes[1])
    live = saved.astype(dtypes[0])
    saved = live.astype(dtypes[1])  # equal where untouched, whatever the dtypes
    dirty = rng.random(n) < 0.5
    moved = dirty & (rng.random(n) < 0.6)
    live[moved] += rng.integers(1, 4, (int(moved.sum()), width)).astype(dtypes[0])  # ties
    live[0], saved[0] = -0.0, 0.0  # no change
    dirty[0] = True
    if n > 5:
        live[5] = np.nan
        dirty[5] = True
    changed = row_change_norms(live, saved) != 0
    for k in (0, 1, n // 3, n, n + 2):
        mask = dirty.copy()
        chosen, still = take_top_changed(mask, live, saved, k)
        np.testing.assert_array_equal(chosen, select_top_changed(live, saved, k))
        assert not mask.any()
        left = changed.copy()
        left[chosen] = False
        left |= np.isnan(row_change_norms(live, saved))
        np.testing.assert_array_equal(still, np.flatnonzero(left))


def _choice_cases(rng, m, dtype):
    """Changes of m changed rows that stress the radix choice: spread, heavy ties, keys equal
    but for their last bits (settled digit by digit to the end), +inf with NaN (ranked as
    equals), subnormals, all equal."""
    yield rng.random(m).astype(dtype)
    yield rng.integers(1, 4, m).astype(dtype)
    one = np.array(1.0, dtype)
    yield np.nextafter(one, dtype(2), dtype=dtype) + rng.integers(0, 5, m) * np.spacing(one)
    mixed = rng.random(m).astype(dtype)
    mixed[rng.random(m) < 0.1] = np.inf
    mixed[rng.random(m) < 0.1] = np.nan
    yield mixed
    yield (rng.integers(1, 9, m) * np.finfo(dtype).smallest_subnormal).astype(dtype)
    yield np.full(m, 0.25, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_choice_among_changed_rows_is_top_k_of_the_whole_table(dtype):
    """The shards' compiled choice of the k largest changes among the changed rows (radix
    digits over the scores' bits, one emitting pass) gives top_k's rows of the whole table,
    ties to the smallest ids and NaN as +inf, and as still changed the rows not chosen and the
    NaN ones, for every k from 1 to the number of changed rows."""
    rng = np.random.default_rng(7)
    n = 3000
    for m in (1, 2, 5, 300, 2100):
        ids = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        for scores in _choice_cases(rng, m, dtype):
            dense = np.zeros(n, dtype)
            dense[ids] = scores
            order = ranking(dense)
            for k in sorted({1, 2, m // 3, m // 2, m - 1, m} - {0}):
                chosen, still = changed._choose(ids, scores, k, n)
                np.testing.assert_array_equal(chosen, reference(dense, k, order))
                left = np.setdiff1d(ids, chosen)
                expected = np.union1d(left, ids[np.isnan(scores)])
                np.testing.assert_array_equal(still, expected, err_msg=f"m={m} k={k}")


def test_take_top_changed_refuses_a_mask_that_is_not_one_flag_per_row():
    live = np.zeros((8, 1), np.float32)
    for bad in (np.zeros(7, bool), np.zeros(8, np.uint8), np.zeros(16, bool)[::2]):
        with pytest.raises(ValueError, match="C-contiguous bool array of 8 rows"):
            take_top_changed(bad, live, live, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("width", [1, 5])
def test_gather_saving_is_numpys_gather_and_scatter(dtype, width):
    """The checkpoint's gather (values = live[ids]) and record (saved[ids] = values) in one
    pass: the same arrays as numpy's indexing, for the compiled dtypes and the others."""
    rng = np.random.default_rng(width)
    live = rng.standard_normal((100, width)).astype(dtype)
    saved = np.zeros_like(live)
    for ids in (np.array([3, 0, 99, 3]), np.sort(rng.choice(100, 30, replace=False)), []):
        ids = np.asarray(ids, np.int64)
        want_saved = saved.copy()
        want_saved[ids] = live[ids]
        got = select.gather_saving(live, ids, saved)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, live[ids])
        np.testing.assert_array_equal(saved, want_saved)


def test_gather_saving_refuses_rows_outside_the_table_and_writes_nothing():
    live = np.ones((10, 2), np.float32)
    saved = np.zeros_like(live)
    for bad in ([1, 10], [-1, 2]):
        with pytest.raises(IndexError, match="out of bounds for a table of 10 rows"):
            select.gather_saving(live, np.array(bad, np.int64), saved)
        assert not saved.any()


ROW_KERNELS = ("_scan", "_norms_kernel", "_fill_merge", "_gather_saving")


@pytest.mark.parametrize("width", [1, 4])
def test_warm_up_rows_compiles_every_kernel_a_shards_save_runs(width):
    """A shard calls ``warm_up_rows`` for each table before it serves: in a fresh process, a
    save's selection (fewer changed rows than the quota, then more) and snapshot afterwards
    compile no kernel that it did not."""
    import json
    import subprocess
    import sys

    code = f"""
import json
import numpy as np
from scar import select
from scar.select import changed
names = {ROW_KERNELS!r}
def sigs():
    return [len(getattr(changed, n).signatures) for n in names]
select.warm_up_rows(np.float32, {width})
after = sigs()
rng = np.random.default_rng(0)
live = rng.standard_normal((5000, {width})).astype(np.float32)
saved = live.copy()
saved[:300] += 1
for k in (1000, 100):  # quota above, then below, the changed rows
    mask = np.ones(5000, bool)
    chosen, _ = select.take_top_changed(mask, live, saved, k)
    select.gather_saving(live, chosen, saved.copy())
print(json.dumps([after, sigs()]))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after, later = json.loads(run.stdout)
    assert later == after
    assert after[ROW_KERNELS.index("_fill_merge")] == 1
    assert after[ROW_KERNELS.index("_gather_saving")] == 1
    assert after[ROW_KERNELS.index("_scan")] == 1  # scoring one column, or taking the ids
