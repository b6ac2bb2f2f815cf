"""Rework measured finely: crossings of the target interpolated between iterations, and
stochastic runs paired with a clean run of their own chain."""

import numpy as np
import pytest

from scar.algorithms import registry as models
from scar.experiments.cell import run_cell
from scar.experiments.clean import chain_run, clean_run, crossing_lag
from scar.experiments.config import ExperimentConfig


def test_the_crossing_is_interpolated_between_iterations():
    assert crossing_lag(2.0, 0.0, 1.0) == 0.5  # halfway down the last step
    assert crossing_lag(1.1, 0.1, 1.0) == pytest.approx(0.9)  # just below at the start
    assert crossing_lag(5.0, 1.0, 1.0) == 0.0  # reached exactly at the iteration
    assert crossing_lag(0.5, 0.4, 1.0) == 0.0  # already below before: no segment


def cell(**kw):
    base = dict(shards=8, lost_shards=2, trials=4, seed=0, recovery="partial")
    base.update(kw)
    return run_cell(ExperimentConfig(**base))


@pytest.mark.parametrize(
    "model,dataset,optimizer",
    [("mlr", "digits", "gd"), ("mlr", "digits", "sgd"), ("lda", "reuters", "gibbs")],
)
def test_a_failure_that_perturbs_nothing_costs_exactly_nothing(model, dataset, optimizer):
    """Every row saved at every iteration, a partial restore: the restored rows are the live
    ones, the run goes on unchanged, and its rework is 0 exactly - deterministic or not."""
    doc = cell(model=model, dataset=dataset, optimizer=optimizer, checkpoint="full", period=1)
    for t in doc["trials"]:
        assert t["perturbation_norm"] == 0.0
        assert t["rework"] == 0.0 and t["rework_iterations"] == 0
    assert doc["summary"]["rework_ci95"] == [0.0, 0.0]


def test_rework_is_fractional_and_beside_the_whole_count():
    doc = cell(model="mlr", dataset="digits", optimizer="gd", checkpoint="priority", period=8)
    for t in doc["trials"]:
        assert t["rework"] == pytest.approx(t["failed_crossing"] - t["clean_crossing"])
        assert abs(t["rework"] - t["rework_iterations"]) < 1
        assert t["clean_iterations"] - 1 < t["clean_crossing"] <= t["clean_iterations"]
    assert any(t["rework"] != round(t["rework"]) for t in doc["trials"])
    assert doc["summary"]["estimator"] == "one clean run"


def test_stochastic_trials_are_paired_with_the_clean_run_of_their_own_chain():
    doc = cell(model="lda", dataset="reuters", optimizer="gibbs", checkpoint="priority", period=8)
    s = doc["summary"]
    assert s["estimator"] == "paired clean chains" and s["clean_chains"]["chains"] == 4
    chains = [t["chain"] for t in doc["trials"]]
    assert chains == [1, 2, 3, 4]
    # each trial's clean run is its chain's: a fresh clean run of that chain agrees
    algo = models.build("lda", "reuters", "gibbs")
    d = models.defaults("lda", "gibbs")
    base = clean_run(algo, d.epsilon, d.smooth, long_run=d.long_run)
    for t in doc["trials"][:2]:
        mine = chain_run(algo, base, t["chain"], d.smooth, doc["config"]["cap"])
        assert (mine.iterations, mine.iterations - mine.lag) == (
            t["clean_iterations"],
            t["clean_crossing"],
        )
    algo.set_chain(0)
    # chains differ: their clean runs take different numbers of iterations
    assert len({t["clean_crossing"] for t in doc["trials"]}) > 1
    assert s["clean_chains"]["crossing_std"] > 0


def test_chain_zero_is_the_seeds_own_stream():
    """Chains leave chain 0 alone: results recorded before chains existed stay valid."""
    algo = models.build("mlr", "digits", "sgd")
    first = algo.batch(5).copy()
    algo.set_chain(3)
    other = algo.batch(5).copy()
    algo.set_chain(0)
    np.testing.assert_array_equal(algo.batch(5), first)
    assert not np.array_equal(first, other)


def test_rebuild_recomputes_ldas_counts_exactly_from_the_topic_assignments():
    doc = cell(model="lda", dataset="reuters", optimizer="gibbs", checkpoint="priority",
               period=8, recovery="rebuild", trials=2)  # fmt: skip
    for t in doc["trials"]:
        assert t["rows_rebuilt"] == t["rows_restored"] > 0
        assert t["perturbation_norm"] == 0.0 and t["rework"] == 0.0
        assert t["rebuild_seconds"] >= 0


def test_rebuild_solves_the_side_als_solved_last_from_the_other_side():
    algo = models.build("mf", "movielens-100k", "als")
    tables = algo.start()
    for k in range(1, 6):  # ends with an odd iteration: users = solve(items)
        algo.step(tables, k)
    assert algo.rebuilds(5) == ("users",) and algo.rebuilds(6) == ("items",)
    assert algo.rebuilds(0) == ()
    want = tables["users"].copy()
    lost = np.arange(100, 180)
    tables["users"][lost] = np.nan
    algo.rebuild(tables, {"users": lost}, 5)
    np.testing.assert_array_equal(tables["users"], want)


def test_rebuild_is_refused_for_a_model_without_it():
    from scar.errors import ConfigError

    with pytest.raises(ConfigError, match="model mlr has nothing to recompute.*mf, lda"):
        ExperimentConfig(model="mlr", lost_shards=2, recovery="rebuild").validate()
    for model in models.REBUILD_MODELS:  # the registry's list and the algorithms agree
        opt = models.MODEL_OPTIMIZERS[model][0]
        algo = models.build(model, models.MODEL_DATASETS[model][0], opt)
        assert algo.rebuilds(1)
    assert models.build("mlr", "digits", "gd").rebuilds(1) == ()
