import numpy as np
import pytest

from scar.errors import ConfigError
from scar.state import Sharding, State


@pytest.mark.parametrize("scheme", ["range", "hash"])
@pytest.mark.parametrize("n_rows,n_shards", [(65, 8), (8, 8), (5, 8), (1000, 3), (0, 2)])
def test_every_row_belongs_to_exactly_one_shard(scheme, n_rows, n_shards):
    sh = Sharding(n_rows, n_shards, scheme)
    owner = sh.shard_of(np.arange(n_rows))
    assert owner.shape == (n_rows,)
    assert ((owner >= 0) & (owner < n_shards)).all()
    parts = [sh.rows_of([s]) for s in range(n_shards)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n_rows))
    for s, rows in enumerate(parts):
        assert (owner[rows] == s).all()
    assert sh.rows_per_shard().sum() == n_rows


def test_range_shards_are_contiguous_and_balanced():
    sh = Sharding(65, 8)
    sizes = sh.rows_per_shard()
    assert sizes.max() - sizes.min() <= 1
    for s in range(8):
        rows = sh.rows_of(s)
        assert (np.diff(rows) == 1).all()


def test_hash_layout_is_stable_and_spread():
    a = Sharding(10000, 8, "hash").shard_of(np.arange(10000))
    b = Sharding(10000, 8, "hash").shard_of(np.arange(10000))
    assert (a == b).all()
    counts = np.bincount(a, minlength=8)
    assert counts.min() > 1000  # roughly 1250 each


def test_state_rows_of_covers_every_table():
    st = State({"U": np.zeros((10, 3)), "V": np.zeros((21, 3))}, n_shards=4)
    rows = st.rows_of([1, 2])
    assert set(rows) == {"U", "V"}
    assert (st.shardings["U"].shard_of(rows["U"]) >= 1).all()
    assert len(rows["V"]) == sum(len(st.shardings["V"].rows_of(s)) for s in (1, 2))


def test_state_rejects_bad_tables():
    with pytest.raises(ConfigError):
        State({})
    with pytest.raises(ConfigError):
        State({"x": np.zeros((2, 2, 2))})
    with pytest.raises(ConfigError):
        State({"x": np.zeros((2, 2), dtype=np.int64)})
    with pytest.raises(ConfigError):
        Sharding(10, 0)
    with pytest.raises(ConfigError):
        Sharding(10, 8).rows_of([8])


def test_tables_update_in_place_through_the_state():
    st = State({"w": np.zeros((4, 2), np.float32)}, n_shards=2)
    arr = st["w"]
    st["w"] += 1.0
    st["w"] = np.full((4, 2), 3.0)
    assert arr is st["w"] and (arr == 3.0).all()
    with pytest.raises(ConfigError, match="shape"):
        st["w"] = np.zeros((5, 2))
    with pytest.raises(ConfigError, match="no table"):
        st["v"] = np.zeros((4, 2))
