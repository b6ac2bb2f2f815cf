"""The store contract, on the in-memory store (the durable stores must pass the same)."""

import numpy as np
import pytest

from scar.errors import StoreError
from scar.store import MemoryStore, TableSpec


@pytest.fixture
def store():
    s = MemoryStore()
    s.open([TableSpec("a", 10, 3), TableSpec("b", 4, 2, "float64")])
    return s


def test_latest_value_per_row_across_full_and_partial_versions(store):
    a0 = np.arange(30, dtype=np.float32).reshape(10, 3)
    store.save(0, {"a": (None, a0), "b": (None, np.zeros((4, 2)))})
    store.save(
        5,
        {
            "a": (np.array([2, 7]), np.full((2, 3), -1, np.float32)),
            "b": (np.array([1]), np.ones((1, 2))),
        },
    )
    store.save(
        9,
        {
            "a": (np.array([7]), np.full((1, 3), -2, np.float32)),
            "b": (np.array([], np.int64), np.zeros((0, 2))),
        },
    )
    got = store.read_rows("a")
    want = a0.copy()
    want[2] = -1
    want[7] = -2
    np.testing.assert_array_equal(got, want)
    assert store.saved_iteration("a").tolist() == [0, 0, 5, 0, 0, 0, 0, 9, 0, 0]
    np.testing.assert_array_equal(store.read_rows("a", np.array([7, 2])), want[[7, 2]])
    v = store.versions()
    assert [x.iteration for x in v] == [0, 5, 9]
    assert [x.complete for x in v] == [True, False, False]
    assert store.latest().iteration == 9


def test_save_copies_its_input(store):
    a = np.ones((10, 3), np.float32)
    store.save(0, {"a": (None, a), "b": (None, np.zeros((4, 2)))})
    a[:] = 5
    assert (store.read_rows("a") == 1).all()


def test_aux_arrays_come_back_with_their_iteration(store):
    store.save(3, {"a": (None, np.zeros((10, 3), np.float32))}, aux={"cursor": np.array([42])})
    it, aux = store.read_aux()
    assert it == 3 and aux["cursor"].tolist() == [42]


def test_rejects_wrong_shapes_and_tables(store):
    with pytest.raises(StoreError, match="shape"):
        store.save(0, {"a": (None, np.zeros((9, 3), np.float32))})
    with pytest.raises(StoreError, match="not in this store"):
        store.save(0, {"c": (None, np.zeros((1, 1)))})
    with pytest.raises(StoreError, match="out of range"):
        store.save(0, {"a": (np.array([10]), np.zeros((1, 3), np.float32))})


def test_reopening_with_a_different_shape_is_an_error(store):
    with pytest.raises(StoreError, match="store holds tables"):
        store.open([TableSpec("a", 11, 3), TableSpec("b", 4, 2, "float64")])
    store.open([TableSpec("a", 10, 3), TableSpec("b", 4, 2, "float64")])  # same: fine
