"""MF-ALS and LDA on the parameter-server split (local runtime): the same numbers as the
single-process algorithms, consistent LDA counts, partial and full recovery."""

import numpy as np
import pytest
from runtime_helpers import close, lda_counts, make_trainer, run_steps, saved_rows

from scar.algorithms.lda_gibbs import LDA
from scar.algorithms.registry import build
from scar.runtime.local import LocalCluster

MF = dict(model="mf", dataset="movielens-100k")
LDA_KW = dict(model="lda", dataset="reuters", hyper={"topics": 8})


def reference(model, dataset, n, hyper=None, optimizer=None):
    alg = build(model, dataset, optimizer or {"mf": "als", "lda": "gibbs"}[model], hyper or {}, 0)
    tables = alg.start()
    out = [alg.objective(tables)]
    for it in range(1, n + 1):
        alg.step(tables, it)
        out.append(alg.objective(tables))
    return alg, tables, np.array(out)


def objectives(t):
    return np.array([f for _, f in t.trajectory])


def test_mf_split_reproduces_als_half_steps_exactly_with_three_workers(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, **MF, workers=3, iterations=8)
    run_steps(t, 8)
    _, tables, ref = reference("mf", "movielens-100k", 8)
    np.testing.assert_array_equal(objectives(t), ref)
    for name in ("users", "items"):
        np.testing.assert_array_equal(t.tables[name], tables[name])
        assert t.tables[name].dtype == np.float64
    close(t)


def test_lda_with_one_worker_is_the_single_process_sampler(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, **LDA_KW, workers=1, iterations=6)
    run_steps(t, 6)
    alg, tables, ref = reference("lda", "reuters", 6, {"topics": 8})
    np.testing.assert_array_equal(objectives(t), ref)
    np.testing.assert_array_equal(t.tables[LDA.TABLE], tables[LDA.TABLE])
    (state,) = t.worker_states()
    np.testing.assert_array_equal(state["z"], alg.z)
    np.testing.assert_array_equal(state["doc_topic"], alg.ndt)
    close(t)


def test_lda_with_three_workers_keeps_exact_counts_and_raises_the_likelihood(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, **LDA_KW, workers=3, iterations=12)
    run_steps(t, 12)
    f = objectives(t)
    assert f[-1] < f[0] - 1.0 and f[-1] < f[3]  # -log p(w, z) per token falls
    nwt, ndt = lda_counts(t)
    np.testing.assert_array_equal(t.tables[LDA.TABLE], nwt)  # table = counts of the z's
    np.testing.assert_array_equal(np.concatenate([s["doc_topic"] for s in t.worker_states()]), ndt)
    alg = t.split.algorithm
    np.testing.assert_array_equal(nwt.sum(axis=1), alg.word_count)
    assert nwt.sum() == len(alg.words)
    close(t)


@pytest.mark.parametrize("workers", [1, 2])
def test_lda_partial_recovery_redeals_the_lost_words_tokens(tmp_path, workers):
    t = make_trainer(
        LocalCluster(),
        tmp_path,
        **LDA_KW,
        workers=workers,
        checkpoint="priority",
        fraction=0.25,
        period=4,
    )
    run_steps(t, 7)
    before = t.tables[LDA.TABLE].copy()
    states = t.worker_states()
    t.kill([1])
    after = t.refresh()[LDA.TABLE]
    rows = t.layout.rows(1)[LDA.TABLE]
    survivors = np.setdiff1d(np.arange(before.shape[0]), rows)
    np.testing.assert_array_equal(after[survivors], before[survivors])
    np.testing.assert_array_equal(after[rows], saved_rows(t.cfg.store, 1, LDA.TABLE))
    assert not np.array_equal(after[rows], before[rows])
    np.testing.assert_array_equal(lda_counts(t)[0], after)  # z re-dealt to the restored rows
    # ... exactly as the single-process algorithm re-deals them
    alg = build("lda", "reuters", "gibbs", {"topics": 8}, 0)
    alg.skip_to(7, {n: np.concatenate([s[n] for s in states]) for n in ("z", "doc_topic")})
    alg.after_restore({LDA.TABLE: after}, {LDA.TABLE: rows})
    got = t.worker_states()
    np.testing.assert_array_equal(np.concatenate([s["z"] for s in got]), alg.z)
    np.testing.assert_array_equal(np.concatenate([s["doc_topic"] for s in got]), alg.ndt)
    run_steps(t, 3)
    np.testing.assert_array_equal(lda_counts(t)[0], t.tables[LDA.TABLE])
    close(t)


def test_lda_full_recovery_rewinds_the_workers_and_replays_the_same_chain(tmp_path):
    t = make_trainer(
        LocalCluster(), tmp_path, **LDA_KW, workers=2, checkpoint="full", period=4, recovery="full"
    )
    run_steps(t, 8)
    for h in t.shards:  # the checkpoint at 8 durable (a kill loses what is still queued)
        t.cluster.get(h, t.cluster.call(h, "sync"))
    at8 = t.tables[LDA.TABLE].copy()
    run_steps(t, 3)
    t.kill([0])
    np.testing.assert_array_equal(t.refresh()[LDA.TABLE], at8)
    assert t.iteration == 8
    run_steps(t, 3)  # the sampler is keyed by the iteration: the same sweeps again
    its = [i for i, _ in t.trajectory]
    assert its[-6:] == [9, 10, 11, 9, 10, 11]
    np.testing.assert_array_equal(objectives(t)[-6:-3], objectives(t)[-3:])
    close(t)


def test_mf_partial_recovery_keeps_survivors_and_converges(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, **MF, checkpoint="priority", fraction=0.25, period=4)
    run_steps(t, 9)
    before = {n: t.tables[n].copy() for n in ("users", "items")}
    t.kill([3])
    after = t.refresh()
    for name in ("users", "items"):
        rows = t.layout.rows(3)[name]
        survivors = np.setdiff1d(np.arange(before[name].shape[0]), rows)
        np.testing.assert_array_equal(after[name][survivors], before[name][survivors])
        np.testing.assert_array_equal(after[name][rows], saved_rows(t.cfg.store, 3, name))
    run_steps(t, 12)
    _, _, ref = reference("mf", "movielens-100k", 21)
    assert objectives(t)[-1] == pytest.approx(ref[-1], rel=1e-3)
    close(t)


def test_lda_survives_repeated_kills_with_consistent_counts(tmp_path):
    kw = dict(**LDA_KW, workers=2, iterations=40, checkpoint="priority", period=8)
    t = make_trainer(LocalCluster(), tmp_path / "chaos", kill_every=4, **kw)
    chaos = t.run()
    clean = make_trainer(LocalCluster(), tmp_path / "clean", **kw).run()
    assert len(chaos["failures"]) == 9 and chaos["totals"]["iterations"] == 40
    nwt, _ = lda_counts(t)
    np.testing.assert_array_equal(t.tables[LDA.TABLE], nwt)
    assert chaos["objective_final"] == pytest.approx(clean["objective_final"], rel=0.02)
