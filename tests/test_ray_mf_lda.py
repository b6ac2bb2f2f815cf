"""MF-ALS and LDA on the Ray runtime: SIGKILLed shards, partial recovery, survivors untouched."""

import numpy as np
from runtime_helpers import close, lda_counts, make_trainer, run_steps, saved_rows

from scar.algorithms.lda_gibbs import LDA
from scar.runtime.local import LocalCluster


def survivors_kept_and_lost_rows_restored(t, before, shard):
    after = t.tables
    for name, old in before.items():
        rows = t.layout.rows(shard)[name]
        survivors = np.setdiff1d(np.arange(old.shape[0]), rows)
        np.testing.assert_array_equal(after[name][survivors], old[survivors])
        np.testing.assert_array_equal(after[name][rows], saved_rows(t.cfg.store, shard, name))
        assert after[name].dtype == old.dtype


def test_mf_on_ray_matches_local_then_survives_a_sigkill(ray_cluster, tmp_path):
    kw = dict(model="mf", dataset="movielens-100k", shards=3, workers=2, iterations=12)
    kw.update(checkpoint="priority", fraction=0.25, period=3, async_writes=False)
    remote = make_trainer(ray_cluster, tmp_path / "ray", **kw)
    local = make_trainer(LocalCluster(), tmp_path / "local", **kw)
    run_steps(remote, 7)
    run_steps(local, 7)
    assert remote.trajectory == local.trajectory  # every row solved exactly the same way
    before = {n: remote.tables[n].copy() for n in ("users", "items")}
    remote.kill([1])
    remote.refresh()
    survivors_kept_and_lost_rows_restored(remote, before, 1)
    assert remote.failures[0].rows_restored == sum(len(r) for r in remote.layout.rows(1).values())
    run_steps(remote, 5)
    assert remote.trajectory[-1][1] < remote.failures[0].objective_after
    close(remote)
    close(local)


def test_lda_on_ray_matches_local_then_redeals_after_a_sigkill(ray_cluster, tmp_path):
    kw = dict(model="lda", dataset="reuters", hyper={"topics": 8}, shards=3, workers=2)
    kw.update(checkpoint="priority", fraction=0.25, period=3, async_writes=False)
    remote = make_trainer(ray_cluster, tmp_path / "ray", **kw)
    local = make_trainer(LocalCluster(), tmp_path / "local", **kw)
    run_steps(remote, 5)
    run_steps(local, 5)
    assert remote.trajectory == local.trajectory  # integer counts: exact on both runtimes
    before = {LDA.TABLE: remote.tables[LDA.TABLE].copy()}
    remote.kill([2])
    local.kill([2])
    remote.refresh()
    local.refresh()
    survivors_kept_and_lost_rows_restored(remote, before, 2)
    np.testing.assert_array_equal(lda_counts(remote)[0], remote.tables[LDA.TABLE])
    run_steps(remote, 3)
    run_steps(local, 3)
    assert remote.trajectory == local.trajectory  # the same re-deal, the same chain after it
    np.testing.assert_array_equal(lda_counts(remote)[0], remote.tables[LDA.TABLE])
    close(remote)
    close(local)
