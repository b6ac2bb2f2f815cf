"""Trials replay the clean run's recorded prefix instead of recomputing it (clean.Trajectory).
The replay must be invisible: every trial record is identical to a fully computed one."""

import json

import numpy as np
import pytest

from scar.experiments.cell import run_cell
from scar.experiments.clean import Trajectory, prepare
from scar.experiments.config import ExperimentConfig

CASES = [
    ("mlr", "digits", "gd", "priority", "partial"),
    ("mlr", "digits", "sgd", "full", "full"),
    ("mf", "movielens-100k", "als", "round-robin", "partial"),
    ("lda", "reuters", "gibbs", "priority", "partial"),
    ("lda", "reuters", "gibbs", "full", "full"),
]


@pytest.mark.parametrize("model,dataset,optimizer,checkpoint,recovery", CASES)
def test_replayed_trials_equal_computed_trials(model, dataset, optimizer, checkpoint, recovery):
    cfg = ExperimentConfig(
        model=model,
        dataset=dataset,
        optimizer=optimizer,
        lost_shards=2,
        checkpoint=checkpoint,
        recovery=recovery,
        trials=3,
        seed=3,
    )
    replayed = run_cell(cfg, replay=True)
    computed = run_cell(cfg, replay=False)
    assert json.dumps(replayed, sort_keys=True) == json.dumps(computed, sort_keys=True)


def test_the_clean_run_records_its_prefix_up_to_the_target():
    algo, clean = prepare("mlr", "digits", "gd", (), 0, 0.01, 1)
    assert len(clean.trajectory) == clean.iterations  # iterations 0 .. T_clean - 1
    state = algo.start()
    for k in range(1, 6):
        algo.step(state, k)
    assert (clean.trajectory.tables[5]["weights"] == state["weights"]).all()


def test_a_budget_smaller_than_the_run_records_a_shorter_prefix():
    t = Trajectory(budget=3 * 8 * 10)
    for k in range(10):
        t.record({"w": np.full(10, k, np.float64)}, {})
    assert len(t) == 3 and t.full
    assert [int(s["w"][0]) for s in t.tables] == [0, 1, 2]
