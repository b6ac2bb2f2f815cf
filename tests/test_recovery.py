import numpy as np
import pytest

from scar.checkpoint import Checkpointer
from scar.errors import ConfigError, StoreError
from scar.policies import make_policy
from scar.recovery import recover
from scar.state import State
from scar.store import MemoryStore, specs_of


def make(policy="full", period=5, fraction=None):
    state = State(
        {"U": np.arange(40, dtype=np.float32).reshape(20, 2), "V": np.ones((9, 2), np.float32)},
        n_shards=4,
    )
    return state, Checkpointer(state, make_policy(policy, period, fraction))


def test_fail_destroys_exactly_the_lost_rows():
    state, ckpt = make()
    lost = ckpt.fail([1, 3])
    for name, rows in lost.items():
        assert np.isnan(state[name][rows]).all()
        keep = np.setdiff1d(np.arange(state[name].shape[0]), rows)
        assert np.isfinite(state[name][keep]).all()


def test_partial_recovery_restores_lost_rows_and_leaves_the_rest():
    state, ckpt = make()
    ckpt.save_all(0)
    saved = state.copy()
    for t in state.values():
        t += 100.0  # training moves on
    ckpt.step(3)  # not due: nothing saved
    live = state.copy()
    ckpt.fail([2])
    rec = ckpt.recover([2], "partial")
    assert rec.restart_iteration is None
    lost = state.rows_of([2])
    for name in state:
        rows = lost[name]
        keep = np.setdiff1d(np.arange(state[name].shape[0]), rows)
        np.testing.assert_array_equal(state[name][rows], saved[name][rows])
        np.testing.assert_array_equal(state[name][keep], live[name][keep])
    assert rec.rows_restored == {n: len(r) for n, r in lost.items()}


def test_partial_recovery_without_an_explicit_base_checkpoint():
    """The first step saves every row itself: no ``save_all`` is needed before a recovery."""
    state, ckpt = make("priority", period=8, fraction=0.25)  # due every 2nd iteration
    for t in state.values():
        t += 1.0
    ckpt.step(1)  # not due, but the first: the base checkpoint, every row
    at1 = state.copy()
    for it in range(2, 6):
        for t in state.values():
            t[it] += 10.0 * it  # one row of each table moves
        ckpt.step(it)
    live = state.copy()
    ckpt.fail([1])
    rec = ckpt.recover([1], "partial")
    lost = state.rows_of([1])
    assert rec.rows_restored == {n: len(r) for n, r in lost.items()}
    for name in state:
        rows = lost[name]
        keep = np.setdiff1d(np.arange(state[name].shape[0]), rows)
        np.testing.assert_array_equal(state[name][keep], live[name][keep])
        # each lost row as last saved: at the base, or at 2 or 4 when it was the one to move
        np.testing.assert_array_equal(state[name][rows], ckpt.store.read_rows(name, rows))
        at = ckpt.store.saved_iteration(name, rows)
        assert set(at.tolist()) <= {1, 2, 4}
        np.testing.assert_array_equal(state[name][rows[at == 1]], at1[name][rows[at == 1]])
    assert (ckpt.store.saved_iteration("V", lost["V"]) == 4).any()  # rows of mixed ages


def test_full_recovery_without_an_explicit_base_checkpoint():
    state, ckpt = make(period=5)
    for it in range(1, 4):
        for t in state.values():
            t += 1.0
        ckpt.step(it)  # the first makes the base: the state after iteration 1
    ckpt.fail([2])
    rec = ckpt.recover([2], "full")
    assert rec.restart_iteration == 1
    for name in state:
        np.testing.assert_array_equal(state[name], ckpt.store.read_rows(name))
    np.testing.assert_array_equal(state["V"], np.full((9, 2), 2.0, np.float32))


def test_full_recovery_rolls_everything_back_to_the_last_checkpoint():
    state, ckpt = make(period=5)
    ckpt.save_all(0)
    for it in range(1, 8):
        for t in state.values():
            t += 1.0
        ckpt.step(it)
    at5 = {n: t - 2.0 for n, t in state.items()}  # the state after iteration 5
    ckpt.fail([0])
    rec = ckpt.recover([0], "full")
    assert rec.restart_iteration == 5
    for name in state:
        np.testing.assert_array_equal(state[name], at5[name])


def test_partial_recovery_of_priority_checkpoint_reads_latest_value_per_row():
    state, ckpt = make("priority", period=8, fraction=0.25)
    ckpt.save_all(0)
    state["U"][4] += 7.0  # the largest change: saved at the next checkpoint
    ckpt.step(2)
    state["U"][4] += 1.0  # changed again after the save
    ckpt.fail([0])  # shard 0 owns U rows 0..4
    ckpt.recover([0], "partial")
    np.testing.assert_array_equal(state["U"][4], np.array([8 + 7, 9 + 7], np.float32))
    np.testing.assert_array_equal(state["U"][:4], np.arange(8, dtype=np.float32).reshape(4, 2))


def test_recovery_checks_its_inputs():
    state, ckpt = make()
    ckpt.save_all(0)
    with pytest.raises(ConfigError, match=r"lost_shards must be shard ids in 0..3, got \[4\]"):
        ckpt.recover([4], "partial")
    with pytest.raises(ConfigError, match="mode must be one of full or partial, got 'sideways'"):
        ckpt.recover([0], "sideways")


def test_cannot_restore_rows_that_were_never_saved():
    state, _ = make()
    store = MemoryStore()
    store.open(specs_of(state))
    with pytest.raises(StoreError, match="never checkpointed"):
        recover(state, store, [1], "partial")
    with pytest.raises(StoreError, match="no checkpoint"):
        recover(state, store, [1], "full")


@pytest.mark.parametrize("scheme", ["range", "hash"])
def test_partial_recovery_is_the_same_for_contiguous_and_scattered_shards(scheme, tmp_path):
    """A range shard is read straight into the live rows, a hash shard's scattered rows
    through a copy: both give the saved values of the lost rows and touch nothing else."""
    from scar.store import DurableStore

    rng = np.random.default_rng(3)
    state = State({"U": rng.normal(size=(50, 3)), "V": rng.normal(size=(7, 2))}, 4, scheme)
    store = DurableStore(str(tmp_path / "s"))
    store.open(specs_of(state))
    ckpt = Checkpointer(state, make_policy("priority", 4, 0.25), store=store)
    for it in range(9):
        for t in state.values():
            t += rng.normal(size=t.shape)
        ckpt.step(it)
    ckpt.wait()
    live = state.copy()
    lost = ckpt.fail([1])
    ckpt.recover([1], "partial")
    for name, rows in lost.items():
        np.testing.assert_array_equal(state[name][rows], store.read_rows(name, rows))
        keep = np.setdiff1d(np.arange(len(live[name])), rows)
        np.testing.assert_array_equal(state[name][keep], live[name][keep])
        assert np.isfinite(state[name]).all()
    store.close()
