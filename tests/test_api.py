"""The Python API as the README shows it: bring your own training loop."""

import numpy as np

from scar import Checkpointer, MemoryStore, State, make_policy


def test_readme_loop_partial_and_full_recovery():
    rng = np.random.default_rng(0)
    state = State({"weights": np.zeros((785, 10), np.float32)}, n_shards=8)
    policy = make_policy("priority", period=10, fraction=1 / 8)
    with Checkpointer(state, policy, MemoryStore()) as ckpt:
        for it in range(1, 101):
            state["weights"] += rng.standard_normal((785, 10)).astype(np.float32) * 0.01
            ckpt.step(it)
        live = state["weights"].copy()
        # running totals of the saves: the base one the first step makes (every row), then
        # one at every later iteration (r * C = 1.25 rounds to 1), together the bytes full(10)
        # writes in iterations 2..100 (78 or 79 rows of 40 bytes each)
        assert ckpt.saves == 100 and ckpt.last_save.iteration == 100
        assert ckpt.value_bytes == 785 * 40 + (785 * 100 // 10 - 785 * 1 // 10) * 40
        assert ckpt.stored_bytes >= ckpt.value_bytes
        saved_at = ckpt.store.saved_iteration("weights")
        assert saved_at.min() >= 1 and saved_at.max() == 100  # rows of mixed ages

        ckpt.fail([3])
        rec = ckpt.recover([3], mode="partial")
        rows = state.rows_of([3])["weights"]
        others = np.setdiff1d(np.arange(785), rows)
        np.testing.assert_array_equal(state["weights"][others], live[others])
        np.testing.assert_array_equal(state["weights"][rows], ckpt.store.read_rows("weights", rows))
        assert rec.restart_iteration is None and rec.rows_restored == {"weights": len(rows)}

        rec = ckpt.recover([0], mode="full")
        assert rec.restart_iteration == 100
        np.testing.assert_array_equal(state["weights"], ckpt.store.read_rows("weights"))


def test_explicit_base_checkpoint_still_works():
    """``save_all(0)`` before the loop, as before the first step made the base itself: the
    base is the initial state at iteration 0, and the steps then save by policy only."""
    rng = np.random.default_rng(0)
    state = State({"weights": np.zeros((785, 10), np.float32)}, n_shards=8)
    ckpt = Checkpointer(state, make_policy("priority", period=10, fraction=1 / 8), MemoryStore())
    ckpt.save_all(0)
    for it in range(1, 101):
        state["weights"] += rng.standard_normal((785, 10)).astype(np.float32) * 0.01
        ckpt.step(it)
    assert ckpt.saves == 101 and ckpt.last_save.iteration == 100
    assert ckpt.value_bytes == 785 * 40 + 100 * 785 * 40 // 10
    assert ckpt.store.saved_iteration("weights").min() >= 0
    ckpt.fail([3])
    ckpt.recover([3], mode="partial")
    assert np.isfinite(state["weights"]).all()
    ckpt.close()
