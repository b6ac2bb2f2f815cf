"""The store contract (store/base.py), one suite for every store: the in-process MemoryStore and
the durable store on a local directory, memory:// and s3:// (moto's server on 127.0.0.1).

A durable store is also checked after it is closed and opened again read-only: what it read
while open is what a later process reads."""

import numpy as np
import pytest
from store_backends import new_url, s3_server  # noqa: F401

from scar.errors import StoreError
from scar.store import DurableStore, MemoryStore, TableSpec

SPECS = [TableSpec("a", 10, 3), TableSpec("b", 4, 2, "float64")]
KINDS = ("memory-store", "local", "memory", "s3")


class Stores:
    """Makes the store under test, and reopens it (durable kinds) as a later reader would."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind, self.url = kind, url

    def new(self, **options):
        if self.url is None:
            s = MemoryStore()
        else:
            s = DurableStore(self.url, **options)
        s.open(SPECS)
        return s

    def views(self, store):
        """The store itself, then (durable) a read-only copy opened after closing it."""
        yield store
        if self.url is not None:
            store.close()
            yield DurableStore(self.url, readonly=True)


@pytest.fixture(params=KINDS)
def stores(request, tmp_path):
    if request.param == "memory-store":
        return Stores("memory-store", None)
    if request.param == "s3":
        request.getfixturevalue("s3_server")
    return Stores(request.param, new_url(request.param, tmp_path))


def full(a=0.0, b=0.0):
    return {"a": (None, np.full((10, 3), a, np.float32)), "b": (None, np.full((4, 2), b))}


def test_latest_value_per_row_across_full_and_partial_versions(stores):
    store = stores.new()
    a0 = np.arange(30, dtype=np.float32).reshape(10, 3)
    r0 = store.save(0, {"a": (None, a0), "b": (None, np.zeros((4, 2)))})
    r1 = store.save(5, {"a": (np.array([2, 7]), np.full((2, 3), -1, np.float32)), "b": (np.array([1]), np.ones((1, 2)))})  # fmt: skip
    store.save(9, {"a": (np.array([7]), np.full((1, 3), -2, np.float32)), "b": (np.array([], np.int64), np.zeros((0, 2)))})  # fmt: skip
    assert (r0.version, r0.iteration, r0.rows, r0.value_bytes, r0.stored_bytes) == (0, 0, 14, 184, 184)  # fmt: skip
    assert (r1.version, r1.rows, r1.value_bytes, r1.stored_bytes) == (1, 3, 40, 40 + 3 * 8)
    want = a0.copy()
    want[2], want[7] = -1, -2
    for s in stores.views(store):
        np.testing.assert_array_equal(s.read_rows("a"), want)
        assert s.saved_iteration("a").tolist() == [0, 0, 5, 0, 0, 0, 0, 9, 0, 0]
        assert s.saved_iteration("b", np.array([1, 0])).tolist() == [5, 0]
        np.testing.assert_array_equal(s.read_rows("a", np.array([7, 2])), want[[7, 2]])
        assert s.read_rows("b")[1].tolist() == [1, 1]
        v = s.versions()
        assert [(x.version, x.iteration, x.complete) for x in v] == [(0, 0, True), (1, 5, False), (2, 9, False)]  # fmt: skip
        assert s.latest().iteration == 9


def test_rows_never_saved_read_as_zero_and_iteration_minus_one(stores):
    store = stores.new()
    store.save(4, {"a": (np.array([3]), np.ones((1, 3), np.float32))})
    for s in stores.views(store):
        got = s.read_rows("a")
        assert got[3].tolist() == [1, 1, 1] and not got[np.arange(10) != 3].any()
        assert s.saved_iteration("a").tolist() == [-1, -1, -1, 4, -1, -1, -1, -1, -1, -1]
        assert s.saved_iteration("b").tolist() == [-1] * 4
        assert [x.complete for x in s.versions()] == [False]


@pytest.mark.parametrize("async_writes", [False, True])
def test_save_copies_its_input(stores, async_writes):
    store = stores.new() if stores.url is None else stores.new(async_writes=async_writes)
    a = np.ones((10, 3), np.float32)
    ids, part = np.array([1, 2]), np.full((2, 3), 7, np.float32)
    store.save(0, {"a": (None, a), "b": (None, np.zeros((4, 2)))})
    store.save(1, {"a": (ids, part)})
    a[:] = 5
    ids[:] = 9
    part[:] = 8
    for s in stores.views(store):
        got = s.read_rows("a")
        assert (got[[0, *range(3, 10)]] == 1).all() and (got[1:3] == 7).all()


def test_aux_arrays_come_back_with_their_iteration(stores):
    store = stores.new()
    assert store.read_aux() == (-1, {})
    cursor = np.array([42])
    store.save(3, full(), aux={"cursor": cursor, "m": np.eye(2, dtype=np.float16)})
    cursor[0] = 0
    store.save(4, {"a": (np.array([1]), np.ones((1, 3), np.float32))})  # no aux: the last stays
    with pytest.raises(StoreError, match="plain numbers"):
        store.save(5, full(), aux={"o": np.array([None])})
    for s in stores.views(store):
        it, aux = s.read_aux()
        assert it == 3 and aux["cursor"].tolist() == [42] and aux.keys() == {"cursor", "m"}
        assert aux["m"].dtype == np.float16 and aux["m"].tolist() == [[1, 0], [0, 1]]


def test_rejects_wrong_shapes_and_tables(stores):
    store = stores.new()
    with pytest.raises(StoreError, match=r"expected values of shape \(10, 3\)"):
        store.save(0, {"a": (None, np.zeros((9, 3), np.float32))})
    with pytest.raises(StoreError, match="table 'c' is not in this store"):
        store.save(0, {"c": (None, np.zeros((1, 1)))})
    with pytest.raises(StoreError, match="out of range 0..9"):
        store.save(0, {"a": (np.array([10]), np.zeros((1, 3), np.float32))})
    with pytest.raises(StoreError, match="table 'c' is not in this store"):
        store.read_rows("c")
    assert store.versions() == []


def test_saving_before_open_is_an_error(stores):
    store = MemoryStore() if stores.url is None else DurableStore(stores.url)
    with pytest.raises(StoreError, match=r"not open: call open\(specs\) first"):
        store.save(0, full())
    store.close()


def test_unsorted_and_repeated_row_ids_the_last_one_wins(stores):
    store = stores.new()
    store.save(0, full())
    store.save(1, {"a": (np.array([5, 1, 5, 3]), np.arange(12, dtype=np.float32).reshape(4, 3))})
    for s in stores.views(store):
        got = s.read_rows("a")
        assert got[[1, 3, 5]].tolist() == [[3, 4, 5], [9, 10, 11], [6, 7, 8]]
        assert s.read_rows("a", np.array([5, 1, 5])).tolist() == [[6, 7, 8], [3, 4, 5], [6, 7, 8]]  # fmt: skip
        assert s.versions()[1].rows == 3 and not s.versions()[1].complete


def test_a_partial_version_with_every_row_is_complete(stores):
    store = stores.new()
    store.save(0, {"a": (np.arange(10)[::-1], np.zeros((10, 3), np.float32)), "b": (np.arange(4), np.ones((4, 2)))})  # fmt: skip
    store.save(1, {"a": (np.arange(10), np.zeros((10, 3), np.float32))})  # table b missing
    assert [v.complete for v in store.versions()] == [True, False]


def test_opening_with_a_different_shape_is_an_error(stores):
    store = stores.new()
    store.save(0, full(1, 2))
    if stores.url is not None:
        store.close()
        store = DurableStore(stores.url)
    with pytest.raises(
        StoreError,
        match=r"other tables than the model's: different: a\(10, 3\):float32 in the store, "
        r"a\(11, 3\):float32 in the model$",
    ):
        store.open([TableSpec("a", 11, 3), TableSpec("b", 4, 2, "float64")])
    with pytest.raises(
        StoreError, match=r"only in the store: b\(4, 2\):float64; only in the model: "
    ):
        store.open([TableSpec("a", 10, 3), TableSpec("c", 4, 2, "float64")])
    store.open(SPECS)  # the same tables: fine, and the saved rows are there
    assert store.saved_iteration("a").tolist() == [0] * 10
    assert store.read_rows("b").tolist() == [[2, 2]] * 4
    store.close()


def test_read_rows_into_an_array_given(stores):
    """``out``: the rows are placed in the caller's array (a view into live state), which is
    returned; a wrong shape or dtype is refused, naming the table."""
    store = stores.new()
    a0 = np.arange(30, dtype=np.float32).reshape(10, 3)
    store.save(0, {"a": (None, a0), "b": (None, np.zeros((4, 2)))})
    store.save(4, {"a": (np.array([3, 5]), -a0[[3, 5]]), "b": (np.array([0]), np.ones((1, 2)))})
    want = a0.copy()
    want[[3, 5]] *= -1
    for view in stores.views(store):
        live = np.full((10, 3), np.nan, np.float32)
        got = view.read_rows("a", np.arange(2, 7), out=live[2:7])
        assert np.shares_memory(got, live)
        np.testing.assert_array_equal(live[2:7], want[2:7])
        assert np.isnan(live[[0, 1, 7, 8, 9]]).all()  # nothing outside the view is written
        whole = np.empty((10, 3), np.float32)
        np.testing.assert_array_equal(view.read_rows("a", None, out=whole), want)
        for bad in (np.empty((4, 3), np.float32), np.empty((5, 3), np.float64)):
            with pytest.raises(StoreError, match="'a'"):
                view.read_rows("a", np.arange(2, 7), out=bad)
