"""LDA by collapsed Gibbs sampling on Reuters: agreement with the `lda` package, common random
numbers, consistent restores, exact rollback cost, and partial recovery / priority checkpoints
measured in the experiment cell."""

import logging

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher
from strategy_checks import (
    full_rollback_costs_exactly_the_steps_since_the_checkpoint,
    partial_costs_less_than_full,
    priority_beats_the_others_at_equal_bytes,
)

from scar import datasets
from scar.algorithms import lda_gibbs, registry
from scar.algorithms.lda_gibbs import LDA, LDAParams, perplexity, reference_lda
from scar.errors import ConfigError, StoreError
from scar.experiments.cell import run_cell
from scar.experiments.config import ExperimentConfig

K, ALPHA, BETA = 20, 0.1, 0.01
STRATEGIES = [
    ("full", "full"),
    ("full", "partial"),
    ("priority", "partial"),
    ("round-robin", "partial"),
    ("random", "partial"),
]


@pytest.fixture(scope="module")
def corpus():
    return datasets.load("reuters")


def cfg(**kw):
    base = dict(model="lda", dataset="reuters", optimizer="gibbs", shards=8, seed=0)
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.fixture(scope="module")
def cells():
    """Every strategy at equal bytes, on the same failures (half the shards lost, 20 trials:
    a Gibbs chain is chaotic, so each trial carries +-1.3 sweeps of noise; see
    algorithms/registry.py)."""
    return {
        (c, r): run_cell(
            cfg(
                checkpoint=c,
                recovery=r,
                fraction=None if c == "full" else 0.125,
                lost_shards=4,
                trials=20,
            )
        )
        for c, r in STRATEGIES
    }


def recount(algo, corpus):
    nwt = np.zeros((corpus.n_words, K))
    ndt = np.zeros((corpus.n_docs, K))
    np.add.at(nwt, (algo.words, algo.z), 1)
    np.add.at(ndt, (algo.docs, algo.z), 1)
    return nwt, ndt


def test_the_sampler_is_compiled():
    for kernel in (lda_gibbs.gibbs_sweep, lda_gibbs.joint_loglik, lda_gibbs._redeal):
        assert isinstance(kernel, CPUDispatcher)


def test_joint_loglikelihood_is_the_lda_package_formula(corpus):
    import lda._lda

    algo = LDA(corpus, LDAParams(K, ALPHA, BETA))
    tables = algo.start()
    for k in range(1, 6):
        algo.step(tables, k)
    nwt = tables["word_topic"]
    ndt = algo.ndt
    theirs = lda._lda._loglikelihood(
        np.asfortranarray(nwt.T.astype(np.intc)),
        np.ascontiguousarray(ndt, dtype=np.intc),
        nwt.sum(axis=0).astype(np.intc),
        ndt.sum(axis=1).astype(np.intc),
        ALPHA,
        BETA,
    )
    assert algo.loglikelihood(tables) == pytest.approx(theirs, rel=1e-12)
    assert algo.objective(tables) == pytest.approx(-theirs / corpus.n_tokens, rel=1e-12)


def test_loglikelihood_rises(corpus):
    algo = LDA(corpus, LDAParams(K, ALPHA, BETA))
    tables = algo.start()
    ll = [algo.loglikelihood(tables)]
    for k in range(1, 61):
        algo.step(tables, k)
        ll.append(algo.loglikelihood(tables))
    means = [np.mean(ll[i : i + 10]) for i in range(0, 60, 10)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    assert ll[60] > ll[0] + 0.3 * abs(ll[0])


def test_perplexity_within_10_percent_of_the_lda_package(corpus):
    iterations = 200
    counts = corpus.counts()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    model = reference_lda(K, ALPHA, BETA, iterations, seed=1)
    assert root.handlers == handlers and root.level == level  # the root logger is left alone
    model.fit(counts)
    theirs = perplexity(counts, model.doc_topic_, model.topic_word_)
    algo = LDA(corpus, LDAParams(K, ALPHA, BETA, seed=1))
    tables = algo.start()
    for k in range(1, iterations + 1):
        algo.step(tables, k)
    ours = algo.perplexity(tables)
    assert 900 < theirs < 1200  # SPEC: about 1,050-1,064
    assert abs(ours - theirs) <= 0.10 * theirs, (ours, theirs)
    # and the two joint log-likelihoods are within 1 %
    assert algo.loglikelihood(tables) == pytest.approx(model.loglikelihood(), rel=0.01)


def test_common_random_numbers_and_rewinds_replay_exactly(corpus):
    a, b = LDA(corpus, LDAParams()), LDA(corpus, LDAParams())
    ta, tb = a.start(), b.start()
    for k in range(1, 11):
        a.step(ta, k)
        b.step(tb, k)
    assert np.array_equal(a.z, b.z) and np.array_equal(ta["word_topic"], tb["word_topic"])
    saved = ({n: t.copy() for n, t in ta.items()}, {n: v.copy() for n, v in a.aux_state().items()})
    for k in range(11, 16):
        a.step(ta, k)
    first = (a.z.copy(), ta["word_topic"].copy())
    for name, t in saved[0].items():  # full rollback: tables and worker state
        np.copyto(ta[name], t)
    a.set_aux_state(saved[1])
    for k in range(11, 16):
        a.step(ta, k)
    assert np.array_equal(a.z, first[0]) and np.array_equal(ta["word_topic"], first[1])
    assert not np.array_equal(first[0], saved[1]["z"])


def test_restored_rows_become_authoritative(corpus):
    algo = LDA(corpus, LDAParams())
    tables = algo.start()
    for k in range(1, 21):
        algo.step(tables, k)
    stale = tables["word_topic"].copy()
    for k in range(21, 31):
        algo.step(tables, k)
    nwt = tables["word_topic"]
    rows = np.arange(0, corpus.n_words, 3)
    others = np.setdiff1d(np.arange(corpus.n_words), rows)
    z_before = algo.z.copy()
    moved_needed = int(np.abs(nwt[rows] - stale[rows]).sum() // 2)
    nwt[rows] = stale[rows]  # what a partial recovery of old rows does
    algo.after_restore(tables, {"word_topic": rows})
    counts, doc_counts = recount(algo, corpus)
    assert np.array_equal(counts, nwt)  # z agrees with the restored rows ...
    assert np.array_equal(doc_counts, algo.ndt)  # ... and the workers' doc-topic counts with z
    changed = algo.z != z_before
    assert changed.sum() == moved_needed > 0  # as few tokens as possible moved
    assert not np.isin(algo.words[changed], others).any()  # only tokens of restored words
    # a consistent row is left alone
    z_now = algo.z.copy()
    algo.after_restore(tables, {"word_topic": None})
    assert np.array_equal(algo.z, z_now)


def test_rows_that_are_not_counts_are_rejected(corpus):
    algo = LDA(corpus, LDAParams())
    tables = algo.start()
    tables["word_topic"][5, 0] += 1  # sum no longer the word's corpus count
    with pytest.raises(StoreError, match="rows \\[5\\]"):
        algo.after_restore(tables, {"word_topic": np.array([5])})


@pytest.mark.parametrize("fail_at", [23, 31])
def test_full_rollback_rewinds_the_chain_and_costs_exactly_the_sweeps_since(fail_at):
    full_rollback_costs_exactly_the_steps_since_the_checkpoint(cfg, fail_at)


def test_results_name_the_dataset_and_record_quality(cells):
    doc = cells[("priority", "partial")]
    assert doc["config"]["dataset"] == doc["config"]["algorithm"]["dataset"] == "reuters"
    assert doc["config"]["algorithm"]["tokens"] == 84010
    clean = doc["clean"]
    # a stochastic chain has no convergence point: the long run always runs its full length
    assert clean["long_run"]["iterations"] == registry.defaults("lda", "gibbs").long_run
    assert 20 <= clean["clean_iterations"] < clean["long_run"]["iterations"]
    assert clean["metrics"]["loglikelihood"] < clean["long_run"]["metrics"]["loglikelihood"]
    assert clean["long_run"]["metrics"]["perplexity"] < 1200
    assert all("perplexity" in t["metrics"] for t in doc["trials"])


def test_partial_recovery_costs_less_than_full_recovery(cells):
    partial_costs_less_than_full(cells)


def test_priority_beats_round_robin_and_random_at_equal_bytes(cells):
    event = 4258 * K * 4  # one complete checkpoint of the float32 counts
    priority_beats_the_others_at_equal_bytes(cells, event)
    norm = {k[0]: d["summary"]["perturbation_norm_mean"] for k, d in cells.items()}
    assert norm["priority"] < norm["round-robin"] < norm["random"], norm


def test_invalid_settings(corpus):
    for bad in (dict(topics=1), dict(alpha=0.0), dict(beta=-1.0)):
        with pytest.raises(ConfigError):
            LDA(corpus, LDAParams(**bad))
    with pytest.raises(ConfigError, match="no setting"):
        registry.build("lda", "reuters", "gibbs", {"l2": 0.1})
