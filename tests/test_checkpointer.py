"""The Checkpointer's lifecycle: the base checkpoint the first step makes, wait/close and the
context manager, and restore (within a process, and a new process resuming a durable store)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scar.checkpoint import Checkpointer
from scar.errors import ConfigError, StoreError
from scar.policies import make_policy
from scar.state import State
from scar.store import MemoryStore, open_store


def tables(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "U": rng.standard_normal((20, 3)).astype(np.float32),
        "V": rng.standard_normal((9, 2)).astype(np.float64),
    }


def move(state, it):
    """One deterministic 'iteration' of training: every row changes, some more than others."""
    for t in state.values():
        scale = np.linspace(0.1, 2.0, t.shape[0], dtype=t.dtype)[:, None]
        t += np.sin(it + np.arange(t.size, dtype=t.dtype).reshape(t.shape)) * scale


def assert_states_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


# -- the base checkpoint ----------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["full", "priority", "round-robin", "random"])
def test_the_first_step_saves_every_row(policy):
    state = State(tables(), n_shards=4)
    p = make_policy(policy, 4, None) if policy == "full" else make_policy(policy, 5, 0.4)
    ckpt = Checkpointer(state, p)
    move(state, 1)
    result = ckpt.step(1)  # not due (every 4th iteration, or every 2nd): the base
    assert result is not None and result.iteration == 1 and result.rows == 20 + 9
    assert ckpt.store.latest().complete and ckpt.saves == 1
    for name in state:
        assert (ckpt.store.saved_iteration(name) == 1).all()
        np.testing.assert_array_equal(ckpt.store.read_rows(name), state[name])
    move(state, 3)
    assert ckpt.step(3) is None  # then the policy decides: not due
    move(state, 4)
    result = ckpt.step(4)
    assert result.iteration == 4
    assert result.rows == p.rows_per_checkpoint(20, 4) + p.rows_per_checkpoint(9, 4)  # its rows
    assert result.rows == (29 if policy == "full" else 8 + 4)


def test_a_due_first_step_makes_only_the_base_checkpoint():
    state = State(tables(), n_shards=2)
    ckpt = Checkpointer(state, make_policy("priority", 4, 0.25))  # due at every iteration
    move(state, 1)
    assert ckpt.step(1).rows == 29 and len(ckpt.store.versions()) == 1
    move(state, 2)
    assert ckpt.step(2).rows == 20 // 4 + 9 // 4 and len(ckpt.store.versions()) == 2


def test_the_first_step_is_save_all_at_that_iteration():
    """Two runs, one letting the first step save every row and one calling save_all there
    itself, write the same checkpoints, bit for bit."""
    runs = []
    for explicit in (False, True):
        state = State(tables(), n_shards=4)
        ckpt = Checkpointer(state, make_policy("priority", 8, 0.25), aux=lambda: {"k": np.ones(2)})
        for it in range(1, 13):
            move(state, it)
            if explicit and it == 1:
                ckpt.save_all(it)
            else:
                ckpt.step(it)
        runs.append(ckpt)
    a, b = runs
    assert a.store.versions() == b.store.versions()
    assert (a.saves, a.value_bytes, a.stored_bytes) == (b.saves, b.value_bytes, b.stored_bytes)
    for name in a.state:
        np.testing.assert_array_equal(a.store.read_rows(name), b.store.read_rows(name))
        np.testing.assert_array_equal(a.store.saved_iteration(name), b.store.saved_iteration(name))


def test_after_save_all_a_step_does_not_save_every_row_again():
    state = State(tables(), n_shards=4)
    ckpt = Checkpointer(state, make_policy("priority", 10, 0.2))  # due every 2nd iteration
    assert ckpt.save_all(0).rows == 29
    move(state, 1)
    assert ckpt.step(1) is None  # not due, and the base is there
    move(state, 2)
    assert ckpt.step(2).rows == 20 * 2 // 10 + 9 * 2 // 10
    assert ckpt.saves == 2 and not ckpt.store.latest().complete


def test_the_first_step_saves_every_row_only_if_the_store_lacks_some():
    state = State(tables(), n_shards=4)
    store = MemoryStore()
    Checkpointer(state, make_policy("full", 4), store).save_all(0)  # a store with every row
    again = Checkpointer(state, make_policy("full", 4), store)
    assert again.step(1) is None and len(store.versions()) == 1

    partial = MemoryStore()
    first = Checkpointer(state, make_policy("round-robin", 4, 0.5), partial)
    first.save_all(0)
    first.step(2)
    only_some = MemoryStore()  # a store holding some rows only: the first step saves all
    only_some.open(list(partial.specs.values()))
    only_some.save(2, {"U": (np.arange(5), state["U"][:5])})
    ckpt = Checkpointer(state, make_policy("round-robin", 4, 0.5), only_some)
    assert ckpt.step(3).rows == 29
    assert all((only_some.saved_iteration(n) == 3).all() for n in state)


# -- wait, close, with ------------------------------------------------------------------------
def test_wait_makes_every_async_save_durable(tmp_path):
    state = State(tables(), n_shards=4)
    store = open_store(str(tmp_path / "s"), async_writes=True, fsync=False)
    ckpt = Checkpointer(state, make_policy("full", 2), store)
    for it in range(1, 7):
        move(state, it)
        ckpt.step(it)
    ckpt.wait()
    reader = open_store(str(tmp_path / "s"), readonly=True)
    try:
        assert [v.iteration for v in reader.versions()][-1] == 6
        for name in state:
            np.testing.assert_array_equal(reader.read_rows(name), state[name])
    finally:
        reader.close()
        ckpt.close()


def test_close_closes_the_store_passed_in_and_is_idempotent(tmp_path):
    url = str(tmp_path / "s")
    state = State(tables(), n_shards=4)
    ckpt = Checkpointer(state, make_policy("full", 2), open_store(url, fsync=False))
    move(state, 1)
    ckpt.step(1)
    with pytest.raises(StoreError, match="in use"):
        open_store(url, fsync=False)  # the Checkpointer's store holds the lock
    ckpt.close()
    ckpt.close()  # twice: nothing more
    other = open_store(url, fsync=False)  # the lock was released
    assert other.latest().iteration == 1
    other.close()
    with pytest.raises(StoreError, match="closed"):
        ckpt.step(2)
    with pytest.raises(StoreError, match="closed"):
        ckpt.save_all(2)


def test_close_closes_the_store_it_made():
    class Counting(MemoryStore):
        waits = closes = 0

        def wait(self):
            Counting.waits += 1

        def close(self):
            Counting.closes += 1

    state = State(tables(), n_shards=4)
    with Checkpointer(state, make_policy("full", 2), Counting()) as ckpt:
        ckpt.step(1)
        assert Counting.closes == 0
    assert (Counting.waits, Counting.closes) == (1, 1)  # close: wait, then the store's close
    own = Checkpointer(state, make_policy("full", 2))  # no store given: a MemoryStore of its own
    assert isinstance(own.store, MemoryStore)
    own.close()
    with pytest.raises(StoreError, match="closed"):
        own.step(1)


def test_the_with_block_closes_on_an_error_too(tmp_path):
    url = str(tmp_path / "s")
    state = State(tables(), n_shards=4)
    with pytest.raises(RuntimeError, match="training broke"):
        with Checkpointer(state, make_policy("full", 2), open_store(url, fsync=False)) as ckpt:
            ckpt.step(1)
            raise RuntimeError("training broke")
    store = open_store(url, fsync=False)  # not locked any more, and the base is durable
    assert store.latest().iteration == 1
    store.close()


# -- restore ----------------------------------------------------------------------------------
def test_restore_within_a_process_and_the_next_priority_save():
    state = State(tables(), n_shards=4)
    store = MemoryStore()
    ckpt = Checkpointer(state, make_policy("priority", 8, 0.25), store)  # every 2nd iteration
    for it in range(1, 12):
        move(state, it)
        ckpt.step(it)
    saved = {n: store.read_rows(n) for n in state}  # rows of mixed ages

    fresh = State({n: np.full_like(t, np.nan) for n, t in state.items()}, n_shards=4)
    live = {n: t for n, t in fresh.items()}
    resumed = Checkpointer(fresh, make_policy("priority", 8, 0.25), store)
    assert resumed.restore() == 10
    assert_states_equal(fresh, saved)
    assert all(fresh[n] is live[n] for n in fresh)  # in place
    # what the policy compares against is the restored state: the rows changed most since
    # are the ones saved next, and the base is not made again
    policy = resumed.policy
    assert (policy.rows_per_checkpoint(20, 12), policy.rows_per_checkpoint(9, 12)) == (5, 2)
    fresh["U"][[0, 3, 9, 11, 17]] += 100.0
    fresh["V"][[1, 4]] += 100.0
    assert resumed.step(12).rows == 5 + 2
    assert np.flatnonzero(store.saved_iteration("U") == 12).tolist() == [0, 3, 9, 11, 17]
    assert np.flatnonzero(store.saved_iteration("V") == 12).tolist() == [1, 4]


def test_restore_of_an_empty_store_says_so(tmp_path):
    state = State(tables(), n_shards=4)
    with pytest.raises(StoreError, match="nothing to restore"):
        Checkpointer(state, make_policy("full", 2)).restore()
    with Checkpointer(state, make_policy("full", 2), open_store(str(tmp_path / "s"))) as ckpt:
        with pytest.raises(StoreError, match="nothing to restore"):
            ckpt.restore()


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from scar import Checkpointer, State, make_policy
    from scar.store import open_store

    url, expected = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(7)
    state = State({"U": rng.standard_normal((50, 4)).astype(np.float32),
                   "V": rng.standard_normal((13, 3))}, n_shards=5)
    store = open_store(url, async_writes=True)
    with Checkpointer(state, make_policy("full", 4), store) as ckpt:
        for it in range(1, 11):
            for t in state.values():
                t += rng.standard_normal(t.shape).astype(t.dtype)
            ckpt.step(it)
            if it == 8:  # the last save (full, period 4): what a new process resumes from
                np.savez(expected, **state)
    """
)


def test_a_new_process_resumes_from_a_durable_store(tmp_path):
    url, expected = str(tmp_path / "run"), tmp_path / "expected.npz"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(expected)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    want = dict(np.load(expected))
    state = State(
        {"U": np.zeros((50, 4), np.float32), "V": np.zeros((13, 3), np.float64)}, n_shards=5
    )
    live = dict(state.items())
    with Checkpointer(state, make_policy("priority", 4, 0.5), open_store(url)) as ckpt:
        assert ckpt.restore() == 8
        assert_states_equal(state, want)
        assert all(state[n] is live[n] for n in state)
        # training goes on: the next save is a priority save of the rows changed since
        state["U"][[0, 49]] += 1.0
        state["V"][[6]] += 1.0
        assert ckpt.step(9) is None  # not due (every 2nd iteration); no base again
        result = ckpt.step(10)
        assert result.rows == 50 * 2 // 4 + 13 * 2 // 4 and ckpt.saves == 1
        first = np.flatnonzero(ckpt.store.saved_iteration("U") == 10)
        assert {0, 49} <= set(first.tolist())
    reader = open_store(url, readonly=True)
    try:
        assert reader.latest().iteration == 10
        np.testing.assert_array_equal(reader.read_rows("U", [0, 49]), state["U"][[0, 49]])
        np.testing.assert_array_equal(reader.read_rows("V", [6]), state["V"][[6]])
    finally:
        reader.close()


def test_a_follower_is_saved_with_its_leaders_rows_and_chosen_by_the_leaders_change():
    """``follows``: the follower's own change plays no part (here it never changes), its rows
    are saved exactly when its leader's are, and only leaders keep a last-saved copy."""
    rng = np.random.default_rng(3)
    state = State(
        {
            "w": rng.standard_normal((16, 2)).astype(np.float32),
            "m": np.zeros((16, 2), np.float32),
        },
        n_shards=2,
    )
    store = MemoryStore()
    ckpt = Checkpointer(state, make_policy("priority", 4, 1 / 4), store, follows={"m": "w"})
    assert ckpt.leaders == ["w"]
    ckpt.step(0)
    for it in range(1, 9):
        state["w"][it] += 10.0 * it  # row it changes most at iteration it
        state["m"][15] += 1.0  # the follower's own change: ignored
        ckpt.step(it)
    np.testing.assert_array_equal(store.saved_iteration("m"), store.saved_iteration("w"))
    assert store.saved_iteration("w")[8] == 8 and store.saved_iteration("m")[15] == 0


@pytest.mark.parametrize(
    "follows, message",
    [
        ({"m": "nope"}, "tables of the state"),
        ({"m": "w", "w": "m"}, "a leader that follows no table"),
        ({"m": "m"}, "a leader that follows no table"),
        ({"short": "w"}, "as many rows as its leader"),
    ],
)
def test_bad_follows_are_refused(follows, message):
    state = State({"w": np.zeros((4, 1)), "m": np.zeros((4, 1)), "short": np.zeros((2, 1))})
    with pytest.raises(ConfigError, match=message):
        Checkpointer(state, make_policy("priority", 4, 1 / 4), follows=follows)
