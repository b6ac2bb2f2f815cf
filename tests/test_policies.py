import numpy as np
import pytest

from scar.checkpoint import Checkpointer
from scar.errors import ConfigError
from scar.policies import POLICIES, make_policy
from scar.state import State


def random_walk(rng, state, scale):
    for t in state.values():
        t += (rng.standard_normal(t.shape) * scale[: t.shape[0], None]).astype(t.dtype)


@pytest.mark.parametrize(
    "period,fraction", [(10, 1 / 8), (12, 1 / 8), (8, 1 / 4), (5, 1 / 2), (20, 1 / 16), (7, 0.3)]
)
@pytest.mark.parametrize("n_rows", [65, 785, 1000])
def test_bytes_written_per_iteration_equal_across_policies(period, fraction, n_rows):
    """Every policy writes the same bytes per iteration, within one full checkpoint event."""
    iterations = 200
    written = {}
    for name in POLICIES:
        state = State({"w": np.zeros((n_rows, 10), np.float32)}, n_shards=8)
        ckpt = Checkpointer(state, make_policy(name, period, fraction, seed=3))
        rng = np.random.default_rng(0)
        scale = rng.random(n_rows)
        for it in range(1, iterations + 1):
            random_walk(rng, state, scale)
            ckpt.step(it)
        written[name] = ckpt.value_bytes
    one_event = n_rows * 10 * 4
    for name, b in written.items():
        assert abs(b - written["full"]) <= one_event, (name, b, written["full"])
    # and the budget really is spent: full writes every row every `period` iterations (and
    # once more at the first step: the base checkpoint)
    assert written["full"] == (iterations // period + 1) * one_event


def test_priority_saves_the_rows_that_changed_most():
    state = State({"w": np.zeros((100, 4), np.float32)}, n_shards=4)
    ckpt = Checkpointer(state, make_policy("priority", period=8, fraction=1 / 8))
    ckpt.save_all(0)
    change = np.zeros(100, np.float32)
    top = [3, 10, 11, 12, 13, 14, 15, 16, 17, 50, 51, 97]
    change[top] = np.arange(12, 0, -1)
    change[[20, 30]] = 0.5  # smaller changes: not saved now
    state["w"][:, 0] += change
    ev = ckpt.step(1)
    assert ev is not None and ev.rows == 12  # floor(100 * 1 / 8)
    # the saved rows are exactly the 12 largest changes
    assert (ckpt.store.saved_iteration("w") == 1).sum() == 12
    assert np.flatnonzero(ckpt.store.saved_iteration("w") == 1).tolist() == top
    # after saving, their change is zero; next time other rows go first
    state["w"][[0, 1], 1] += 0.5
    ckpt.step(2)
    assert (ckpt.store.saved_iteration("w")[[0, 1]] == 2).all()


def test_priority_ties_broken_by_row_id():
    state = State({"w": np.zeros((16, 1), np.float32)}, n_shards=2)
    pol = make_policy("priority", period=8, fraction=1 / 8)
    saved = state.copy()["w"]
    state["w"][:] = 1.0  # every row changed by the same amount
    assert pol.select("w", state["w"], saved, 1).tolist() == [0, 1]


def test_round_robin_cycles_through_all_rows():
    pol = make_policy("round-robin", period=8, fraction=1 / 4)
    live = np.zeros((10, 2))
    assert pol.interval == 2
    seen = [pol.select("w", live, None, i).tolist() for i in (2, 4, 6, 8, 10)]
    assert [len(s) for s in seen] == [2, 3, 2, 3, 2]  # 10 * 2 / 8 = 2.5 rows per checkpoint
    flat = [r for s in seen[:4] for r in s]
    assert sorted(flat) == list(range(10))  # one period covers every row exactly once
    assert seen[4] == [0, 1]


def test_random_policy_is_seeded():
    live = np.zeros((1000, 1))
    a = make_policy("random", 8, 1 / 8, seed=1).select("w", live, None, 5)
    b = make_policy("random", 8, 1 / 8, seed=1).select("w", live, None, 5)
    c = make_policy("random", 8, 1 / 8, seed=2).select("w", live, None, 5)
    assert (a == b).all() and not (a == c).all()
    assert len(np.unique(a)) == len(a) == 125  # 1000 / 8


def test_schedule_interval():
    assert make_policy("full", 10).interval == 10
    assert make_policy("priority", 16, 1 / 8).interval == 2
    assert make_policy("priority", 10, 1 / 8).interval == 1  # max(1, round(1.25))
    assert make_policy("priority", 4, 1 / 16).interval == 1
    p = make_policy("random", 10, 0.5)
    assert [i for i in range(0, 21) if p.is_due(i)] == [5, 10, 15, 20]


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, float("nan")])
def test_invalid_fraction(fraction):
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\], got"):
        make_policy("priority", 10, fraction)


def test_invalid_policy_and_period():
    with pytest.raises(ConfigError, match="policy must be one of full, priority, round-robin or"):
        make_policy("sometimes", 10, 0.5)
    with pytest.raises(ConfigError, match="period must be a whole number >= 1, got 0"):
        make_policy("full", 0)
    with pytest.raises(ConfigError, match="fraction must be .* for policy 'priority', got None"):
        make_policy("priority", 10)
