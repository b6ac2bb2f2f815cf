"""Acceptance tests of the core slice on MLR (digits): exact rollback cost, the bound, partial
vs full recovery, and priority vs round-robin vs random at equal bytes."""

import copy
import itertools
import json

import numpy as np
import pytest

from scar.algorithms import registry as models
from scar.checkpoint import Checkpointer
from scar.errors import ConfigError
from scar.experiments.cell import failure_event, run_cell, run_with_event
from scar.experiments.clean import clean_run
from scar.experiments.config import ExperimentConfig
from scar.experiments.perturb import sweep
from scar.policies import make_policy
from scar.state import State


@pytest.fixture(scope="module")
def gd():
    algo = models.build("mlr", "digits", "gd")
    d = models.defaults("mlr", "gd")
    return algo, clean_run(algo, d.epsilon, d.smooth)


def cfg(**kw):
    base = dict(
        model="mlr",
        dataset="digits",
        optimizer="gd",
        shards=8,
        lost_shards=2,
        checkpoint="full",
        period=10,
        recovery="full",
        trials=3,
        seed=0,
    )
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.mark.parametrize("fail_at", [37, 40, 41, 59, 99])
def test_full_rollback_costs_exactly_the_iterations_since_the_last_checkpoint(fail_at):
    doc = run_cell(cfg(fail_at=fail_at))
    assert doc["clean"]["clean_iterations"] > fail_at
    for t in doc["trials"]:
        assert t["rework"] == fail_at % 10
        assert t["failed_iterations"] == t["clean_iterations"] + fail_at % 10
        assert not t["censored"]


def test_contract_example_gd_full_rollback_at_37_costs_7():
    doc = run_cell(cfg(fail_at=37, trials=1))
    assert doc["trials"][0]["rework"] == 7
    assert doc["summary"]["rework_mean"] == 7.0


def test_rework_never_exceeds_the_bound_over_a_sweep(gd):
    """Perturbations of controlled size - random and adversarial directions, and resets of
    1..8 shards to older values - at several iterations: measured rework <= bound + 1."""
    algo, clean = gd
    assert clean.contraction is not None and 0.9 < clean.contraction < 1
    points = sweep(
        algo,
        clean,
        1,
        8,
        ("random", "adversarial", "reset"),
        times=(5, 30, 60, 100),
        sizes=(0.02, 0.3, 1.0, 3.0),
        ages=(5, 20),
        lost=(1, 4, 8),
    )
    assert len(points) == 4 * (2 * 4) + 3 * 2 * 3 + 1 * 3  # (at 5, only age 5 has a past)
    for p in points:
        assert not p["censored"]
        assert p["bound"] is not None
        assert p["rework"] <= p["bound"] + 1, p
    # the bound is not vacuous: large adversarial perturbations use a good part of it
    worst = min(p["bound"] + 1 - p["rework"] for p in points)
    assert worst < 200
    # and, as the bound says, the cost grows with the size of the perturbation
    for at in (5, 30, 60, 100):
        adv = [p["rework"] for p in points if p["kind"] == "adversarial" and p["at"] == at]
        assert adv == sorted(adv) and adv[-1] > 100, adv


@pytest.mark.parametrize(
    "checkpoint,recovery",
    [("full", "full"), ("full", "partial"), ("priority", "partial"), ("random", "partial")],
)
def test_failures_respect_the_bound(checkpoint, recovery):
    doc = run_cell(
        cfg(checkpoint=checkpoint, recovery=recovery, fraction=0.125, period=None, trials=6)
    )
    for t in doc["trials"]:
        assert t["bound"] is not None
        assert t["rework"] <= t["bound"] + 1


def test_partial_recovery_never_costs_more_than_full_for_any_lost_subset(gd):
    """All 255 non-empty subsets of 8 shards lost just before a checkpoint was due (the
    costliest moment for a rollback), and every single shard at a second failure time."""
    algo, clean = gd
    period = max(2, round(clean.iterations / 10))
    cap = 3 * clean.iterations

    def branch(ckpt, fail_at, lost, mode):
        c = copy.deepcopy(ckpt)
        ev = failure_event(algo, clean, c, list(lost), mode)
        executed, _, censored, _ = run_with_event(
            algo, clean, c.state, 1, cap, fail_at, ev, c, start=fail_at
        )
        assert not censored
        return executed - clean.iterations

    for fail_at, subsets in ((5 * period + period - 1, 8), (3 * period + period // 2, 1)):
        # train once up to the failure, with checkpoints, then branch per lost subset
        state = State(algo.start(), 8)
        ckpt = Checkpointer(state, make_policy("full", period))
        ckpt.save_all(0)
        for it in range(1, fail_at + 1):
            algo.step(state, it)
            ckpt.step(it)
        full = fail_at % period
        assert full >= period // 2 >= 2
        for lost in [(0,), (3, 5), tuple(range(8))]:  # the rollback costs the same for any loss
            assert branch(ckpt, fail_at, lost, "full") == full
        partial = {
            lost: branch(ckpt, fail_at, lost, "partial")
            for k in range(1, subsets + 1)
            for lost in itertools.combinations(range(8), k)
        }
        assert all(cost <= full for cost in partial.values()), (fail_at, full, partial)
        singles = [cost for lost, cost in partial.items() if len(lost) == 1]
        assert np.mean(singles) <= 0.5 * full, (singles, full)  # far less when few are lost
        if subsets == 8:
            # losing every shard restores everything: for GD the same cost as the rollback
            assert partial[tuple(range(8))] == full
            by_size = [
                np.mean([c for lost, c in partial.items() if len(lost) == k]) for k in range(1, 9)
            ]
            assert by_size[0] < by_size[3] < by_size[7], by_size


def test_priority_beats_round_robin_and_random_at_equal_bytes():
    docs = {
        p: run_cell(
            cfg(checkpoint=p, fraction=0.125, recovery="partial", period=None, trials=12, seed=100)
        )
        for p in ("priority", "round-robin", "random", "full")
    }
    mean = {p: d["summary"]["rework_mean"] for p, d in docs.items()}
    assert mean["priority"] < mean["round-robin"], mean
    assert mean["priority"] < mean["random"], mean
    # same failures in every cell (same seeds), and equal checkpoint cost
    fails = {p: [(t["fail_at"], t["lost_shards"]) for t in d["trials"]] for p, d in docs.items()}
    assert fails["priority"] == fails["round-robin"] == fails["random"] == fails["full"]
    full_event = 65 * 10 * 4  # bytes of one complete checkpoint of the 65 x 10 weights
    for d in docs.values():
        for t, f in zip(d["trials"], docs["full"]["trials"], strict=True):
            # equal bytes per iteration, to within one checkpoint over the run
            tolerance = full_event / min(t["failed_iterations"], f["failed_iterations"])
            assert abs(t["bytes_per_iteration"] - f["bytes_per_iteration"]) <= tolerance


def test_scar_beats_traditional_by_a_wide_margin():
    trad = run_cell(cfg(checkpoint="full", recovery="full", period=None, trials=12, seed=7))
    scar = run_cell(
        cfg(
            checkpoint="priority",
            fraction=0.125,
            recovery="partial",
            period=None,
            trials=12,
            seed=7,
        )
    )
    reduction = 1 - scar["summary"]["rework_mean"] / trad["summary"]["rework_mean"]
    assert reduction > 0.6, reduction


def test_sgd_partial_recovery_costs_no_more_than_full():
    kw = dict(optimizer="sgd", checkpoint="full", period=None, trials=10, seed=3)
    full = run_cell(cfg(recovery="full", **kw))
    part = run_cell(cfg(recovery="partial", **kw))
    assert full["config"]["smoothing_window"] == 5
    assert full["clean"]["contraction"] is None
    assert all(t["bound"] is None for t in full["trials"])
    assert part["summary"]["rework_mean"] < full["summary"]["rework_mean"]
    assert full["summary"]["rework_mean"] > 0


def test_same_config_same_result():
    a = run_cell(cfg(checkpoint="random", fraction=0.25, recovery="partial", trials=3, seed=5))
    b = run_cell(cfg(checkpoint="random", fraction=0.25, recovery="partial", trials=3, seed=5))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_failure_draws_cover_the_middle_of_the_run():
    doc = run_cell(cfg(trials=20, fail_at=None))
    t_clean = doc["clean"]["clean_iterations"]
    at = [t["fail_at"] for t in doc["trials"]]
    assert min(at) >= 0.2 * t_clean and max(at) <= 0.8 * t_clean
    assert len(set(at)) > 5
    assert all(len(t["lost_shards"]) == 2 for t in doc["trials"])
    assert len({tuple(t["lost_shards"]) for t in doc["trials"]}) > 5


def test_fail_at_after_convergence_is_an_error():
    with pytest.raises(ConfigError, match="fail_at must be below the clean run's .*got 10000"):
        run_cell(cfg(fail_at=10_000, trials=1))


@pytest.mark.parametrize(
    "bad",
    [
        dict(fraction=0.0),
        dict(fraction=1.5),
        dict(lost_shards=9),
        dict(dataset="nope"),
        dict(optimizer="adam"),
        dict(period=0),
        dict(lost_shards=None),
        dict(lost_fraction=0.01, lost_shards=None),
        dict(trials=0),
        dict(epsilon=1.5),
        dict(recovery="half"),
    ],
)
def test_invalid_configs(bad):
    with pytest.raises(ConfigError):
        cfg(**bad).validate()
