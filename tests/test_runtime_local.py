"""The worker/server split and the coordinator on the local (in-process) runtime."""

import gc
import os
import signal

import numpy as np
import pytest
from runtime_helpers import close, make_trainer, run_steps, saved_iterations, saved_rows

from scar.algorithms.registry import build
from scar.algorithms.sparse_lr import CriteoSynthConfig, SparseLR, SparseLRParams, criteo_synth
from scar.errors import StoreError
from scar.policies import PriorityPolicy, TrackedPriority
from scar.runtime.local import LocalCluster
from scar.runtime.nodes import SaveThread

SYNTH = {"examples": 3000, "hash_bits": 10, "fields": 8}


def reference(alg, n):
    tables = alg.start()
    out = [alg.objective(tables)]
    for it in range(1, n + 1):
        alg.step(tables, it)
        out.append(alg.objective(tables))
    return np.array(out), tables


def test_one_worker_reproduces_mlr_step_exactly(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, workers=1, iterations=15)
    run_steps(t, 15)
    ref, tables = reference(build("mlr", "digits", "gd", {}, 0), 15)
    got = np.array([f for _, f in t.trajectory])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(t.tables["weights"], tables["weights"])
    close(t)


@pytest.mark.parametrize("optimizer", ["gd", "sgd"])
def test_three_workers_match_mlr_step_to_float_tolerance(tmp_path, optimizer):
    t = make_trainer(LocalCluster(), tmp_path, workers=3, optimizer=optimizer, iterations=20)
    run_steps(t, 20)
    ref, _ = reference(build("mlr", "digits", optimizer, {}, 0), 20)
    got = np.array([f for _, f in t.trajectory])
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert got[-1] < 0.6 * got[0]
    close(t)


def test_sparse_lr_split_matches_its_step_and_learns(tmp_path):
    t = make_trainer(
        LocalCluster(),
        tmp_path,
        model="sparse-lr",
        dataset="criteo-synth",
        workers=3,
        shards=3,
        synth=SYNTH,
        hyper={"batch_size": 256},
        iterations=30,
    )
    run_steps(t, 30)
    alg = SparseLR(criteo_synth(CriteoSynthConfig(**SYNTH, seed=0)), SparseLRParams(batch_size=256))
    ref, _ = reference(alg, 30)
    got = np.array([f for _, f in t.trajectory])
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert got[-1] < got[0] - 0.01
    close(t)


def test_criteo_synth_is_deterministic_and_shaped_by_its_flags():
    a = criteo_synth(CriteoSynthConfig(examples=500, fields=5, hash_bits=8, seed=3))
    b = criteo_synth(CriteoSynthConfig(examples=500, fields=5, hash_bits=8, seed=3))
    c = criteo_synth(CriteoSynthConfig(examples=500, fields=5, hash_bits=8, seed=4))
    assert a.idx.shape == (500, 5) and a.n_buckets == 256 and a.idx.max() < 256
    np.testing.assert_array_equal(a.idx, b.idx)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.idx, c.idx)
    assert 0.05 < a.y.mean() < 0.5  # a click rate, well below one half


def test_partial_recovery_keeps_survivors_and_restores_the_lost_shard(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, checkpoint="priority", fraction=0.25, period=8)
    run_steps(t, 13)
    before = t.tables["weights"].copy()
    t.kill([2])
    after = t.refresh()["weights"]
    rows = t.layout.rows(2)["weights"]
    survivors = np.setdiff1d(np.arange(before.shape[0]), rows)
    np.testing.assert_array_equal(after[survivors], before[survivors])
    np.testing.assert_array_equal(after[rows], saved_rows(t.cfg.store, 2))
    f = t.failures[0]
    assert (f.iteration, f.shards, f.resume_iteration) == (13, [2], 13)
    assert f.rows_restored == len(rows) and f.bytes_restored == after[rows].nbytes
    assert f.perturbation_norm == pytest.approx(
        np.linalg.norm(after[rows] - before[rows]), rel=1e-5
    )
    assert t.iteration == 13
    close(t)


def test_a_failed_selection_leaves_every_dirty_row_dirty(monkeypatch):
    """The shard's selection clears its dirty mask as it reads it; if the selection then
    fails, nothing was saved, and every row it read must stay dirty for the next save."""
    from scar.select import changed as sel

    policy = TrackedPriority(PriorityPolicy(period=16, fraction=0.25), {"w": 12})
    policy.touch_all()
    policy.select("w", np.ones((12, 1)), np.zeros((12, 1)), 4)  # the first save takes 3 rows
    before = policy.dirty["w"].copy()
    assert before.sum() == 9

    def fail(*args):
        raise MemoryError("no room")

    monkeypatch.setattr(sel, "_choose", fail)
    with pytest.raises(MemoryError):
        policy.select("w", np.ones((12, 1)), np.zeros((12, 1)), 8)
    np.testing.assert_array_equal(policy.dirty["w"], before)


@pytest.mark.parametrize("recovery", ["partial", "full"])
def test_shards_choose_the_priority_policys_rows_through_kills(tmp_path, monkeypatch, recovery):
    """A shard's priority policy reads only the rows touched since their last save; it must
    choose, at every save, the rows PriorityPolicy chooses over the whole table, less those
    equal to their saved copy (the quota's filler when fewer rows changed: sparse LR, async
    saves on the shards' threads, a kill and a restore or rollback mid-run)."""
    checked = []
    tracked = TrackedPriority.select

    def select(self, table, live, saved, iteration):
        expected = PriorityPolicy.select(self, table, live, saved, iteration)
        differs = (live[expected] != saved[expected]).any(axis=1)  # NaN differs too
        got = tracked(self, table, live, saved, iteration)
        np.testing.assert_array_equal(got, expected[differs])
        checked.append(got.size)
        return got

    monkeypatch.setattr(TrackedPriority, "select", select)
    t = make_trainer(
        LocalCluster(),
        tmp_path,
        model="sparse-lr",
        dataset="criteo-synth",
        shards=2,
        synth={"examples": 4000, "hash_bits": 12, "fields": 6},
        hyper={"batch_size": 128},
        checkpoint="priority",
        fraction=0.125,
        period=16,
        recovery=recovery,
        iterations=40,
    )
    run_steps(t, 21)
    t.kill([1])
    t.refresh()
    run_steps(t, 40 - t.iteration)
    close(t)
    assert len(checked) >= 30  # both shards, every save


@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_paused_checkpoints_save_nothing_survive_a_kill_and_resume_on_schedule(
    tmp_path, request, runtime
):
    cluster = LocalCluster() if runtime == "local" else request.getfixturevalue("ray_cluster")
    t = make_trainer(
        cluster, tmp_path, checkpoint="priority", fraction=0.25, period=8, async_writes=True
    )
    run_steps(t, 4)  # saves at 2 and 4 (and the base save at 0)
    t.set_checkpointing(False)
    run_steps(t, 5)
    assert saved_iterations(t) == [[0, 2, 4]] * 4
    at4 = saved_rows(t.cfg.store, 1)
    t.kill([1])  # the replacement restores iteration 4's rows and stays paused
    np.testing.assert_array_equal(t.refresh()["weights"][t.layout.rows(1)["weights"]], at4)
    run_steps(t, 2)
    assert saved_iterations(t) == [[0, 2, 4]] * 4
    t.set_checkpointing(True)
    run_steps(t, 1)  # iteration 12, due
    assert t.iteration == 12
    assert saved_iterations(t) == [[2, 4, 12]] * 4  # keep_last 3
    live = t.tables["weights"]
    for k in range(4):  # the save at 12 took a quarter of the rows (those changed most)
        rows = t.layout.rows(k)["weights"]
        same = (saved_rows(t.cfg.store, k) == live[rows]).all(axis=1)
        assert np.count_nonzero(same) >= len(rows) // 4
    close(t)


def test_full_recovery_rolls_everything_back_to_the_checkpoint(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, checkpoint="full", period=5, recovery="full")
    run_steps(t, 10)
    for h in t.shards:  # the checkpoint at 10 durable (a kill loses what is still queued)
        t.cluster.get(h, t.cluster.call(h, "sync"))
    at10 = t.tables["weights"].copy()
    run_steps(t, 3)
    t.kill([0, 3])
    np.testing.assert_array_equal(t.refresh()["weights"], at10)
    assert t.iteration == 10 and t.failures[0].resume_iteration == 10
    run_steps(t, 3)  # the re-done iterations give the same numbers (deterministic GD)
    assert [i for i, _ in t.trajectory][-6:] == [11, 12, 13, 11, 12, 13]
    objs = dict(
        zip([i for i, _ in t.trajectory][:14], [f for _, f in t.trajectory][:14], strict=True)
    )
    assert t.trajectory[-1][1] == objs[13]
    close(t)


@pytest.mark.parametrize("async_writes", [False, True])
def test_an_unwritable_store_ends_the_run_with_a_store_error(tmp_path, async_writes):
    t = make_trainer(
        LocalCluster(), tmp_path, checkpoint="full", period=2, async_writes=async_writes
    )
    run_steps(t, 2)
    h = t.shards[1]
    t.cluster.get(h, t.cluster.call(h, "sync"))  # no write of iteration 2 still in flight
    data = tmp_path / "store" / "shard-1" / "data"
    for f in data.iterdir():
        f.unlink()
    data.rmdir()
    data.write_text("not a directory")
    with pytest.raises(StoreError, match="shard-1"):  # async: by the save after the failed one
        run_steps(t, 8)
    close(t)


def test_the_save_thread_runs_saves_in_order_at_its_priority_and_raises_their_errors():
    idle = getattr(os, "SCHED_IDLE", None)

    class Shard:
        def __init__(self):
            self.seen = []

        def save(self, iteration):
            self.seen.append((iteration, os.sched_getscheduler(0) if idle is not None else None))
            if iteration == 3:
                raise StoreError("disk full")

    shard = Shard()
    saver = SaveThread(shard.save, idle=True)
    saver.submit(1)
    saver.submit(2)  # waits for save 1 first
    assert saver.join() >= 0.0
    assert [it for it, _ in shard.seen] == [1, 2]
    assert all(policy == idle for _, policy in shard.seen)
    assert os.sched_getscheduler(0) != idle  # the caller's priority is untouched
    saver.submit(3)
    with pytest.raises(StoreError, match="disk full"):
        saver.join()
    assert saver.join() == 0.0  # raised once
    saver.submit(4)
    saver.join()
    assert [it for it, _ in shard.seen] == [1, 2, 3, 4]
    saver.close()

    normal = Shard()
    saver = SaveThread(normal.save, idle=False)
    saver.submit(1)
    saver.join()
    assert normal.seen[0][1] == (None if idle is None else os.sched_getscheduler(0))
    thread = saver._thread
    del normal  # dropped without close(): the shard is freed and its save thread ends
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_config_refuses_kill_shards_without_a_kill_at():
    """kill_shards alone would be silently ignored (a run without the kill asked for): the
    API refuses it as the command line does; with kill_at it defaults to one shard."""
    from scar.errors import ConfigError
    from scar.runtime import TrainConfig

    for extra in ({}, {"kill_every": 5}):
        with pytest.raises(ConfigError, match="kill_shards goes with kill_at"):
            TrainConfig(kill_shards=2, **extra).validate()
    assert TrainConfig(kill_at=3, iterations=10).validate().kill_shards == 1
    assert TrainConfig(kill_at=3, kill_shards=2, iterations=10).validate().kill_shards == 2
    assert TrainConfig().validate().kill_shards is None
    with pytest.raises(ConfigError, match="kill_shards must be a whole number in 1..4"):
        TrainConfig(kill_at=3, kill_shards=0, iterations=10).validate()


@pytest.mark.parametrize("at_kill", [False, True])
def test_an_interrupted_run_closes_its_stores_and_reports_the_run_so_far(tmp_path, at_kill):
    """Ctrl-C (SIGINT) during a run: the run stops after the iteration in progress, every save
    made durable, the stores closed (no spares left), the result so far returned and marked;
    also right after a kill, before the recovery (the dead shard counts with what it had
    reported committed)."""
    from scar.runtime import TrainConfig, Trainer, build_split
    from scar.store import open_store
    from scar.store.tools import verify

    stop = 6 if at_kill else 9
    cfg = TrainConfig(
        runtime="local", shards=3, workers=2, checkpoint="priority", period=8, iterations=50,
        kill_at=6 if at_kill else None, fsync=False, store=str(tmp_path / "s"),
    ).validate()  # fmt: skip
    t = Trainer(cfg, build_split(cfg), LocalCluster(), cfg.store)

    def progress(it, total):
        if it == stop:
            signal.raise_signal(signal.SIGINT)  # as a Ctrl-C in the terminal would

    doc = t.run(progress)
    assert doc["interrupted"] is True
    assert doc["totals"]["iterations"] == stop and len(doc["objective"]) == stop + 1
    assert doc["failures"] == []  # the kill's recovery never ran
    dead = [k for k, h in enumerate(t.shards) if h.dead]
    assert len(dead) == (1 if at_kill else 0)
    # priority(1/8) at C = 8 saves every iteration: the living shards' last save is durable;
    # a dead one counts with the last save it had reported committed (up to 2 in flight)
    committed = min([stop] + [t.durable[k] for k in dead])
    assert doc["totals"]["committed_iteration"] == committed >= stop - 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    for k in set(range(3)) - set(dead):  # (a dead in-process shard still holds its store)
        with open_store(f"{cfg.store}/shard-{k}", readonly=True) as s:
            rep = verify(s)
            assert rep.ok and rep.spares == [], (rep.bad, rep.spares)
            assert s.latest().iteration == stop


def test_a_second_ctrl_c_interrupts_at_once(tmp_path):
    t = make_trainer(LocalCluster(), tmp_path, shards=2, workers=1, iterations=50)

    def progress(it, total):
        if it == 3:
            signal.raise_signal(signal.SIGINT)  # the run will stop after this iteration...
            signal.raise_signal(signal.SIGINT)  # ...but a second Ctrl-C does not wait

    with pytest.raises(KeyboardInterrupt):
        t.run(progress)
    assert t.iteration == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    close(t)


def test_a_simulated_kill_loses_the_saves_a_real_one_loses(tmp_path, monkeypatch):
    """With async writes, a killed shard's queued saves were made durable by a clean close:
    the failure record said committed_before [7], restored_from [10]. Now its store is
    abandoned as a killed process leaves it: the saves it had not committed are lost."""
    import time

    from scar.store.backends import LocalBackend

    t = make_trainer(
        LocalCluster(), tmp_path, checkpoint="priority", fraction=0.25, period=8,
        async_writes=True,
    )  # fmt: skip
    run_steps(t, 9)
    for h in t.shards:  # everything so far durable: what shard 2 reports committed
        t.cluster.get(h, t.cluster.call(h, "sync"))
    real, hold = LocalBackend.publish, {"on": True}

    def held(self, files, rel, data):
        """Shard 2's writes stall (a slow disk) until its store is abandoned (at most 2 s)."""
        deadline = time.monotonic() + 2
        while "shard-2" in self.root and hold["on"] and time.monotonic() < deadline:
            if getattr(self, "_fds", None) == {}:  # released: the store was abandoned
                break
            time.sleep(0.005)
        return real(self, files, rel, data)

    monkeypatch.setattr(LocalBackend, "publish", held)
    run_steps(t, 3)  # two saves queued behind the stalled disk
    t.kill([2])
    hold["on"] = False
    t.refresh()  # the failure is found and the shard replaced
    f = t.failures[0]
    assert f.committed_before == [8] and f.restored_from == f.committed_before
    close(t)


def test_every_model_scar_train_offers_has_a_distributed_split():
    from scar.runtime.config import TRAIN_MODELS
    from scar.runtime.registry import SPLITS

    assert set(TRAIN_MODELS) == set(SPLITS)


def test_a_tracked_priority_save_takes_only_the_rows_that_changed():
    """Fewer changed rows than the quota: only they are saved (a row equal to its saved copy
    needs no saving) - a sparse model's saves follow its updates, not its table's size."""
    policy = TrackedPriority(PriorityPolicy(period=4, fraction=0.5), {"w": 40})
    live = np.zeros((40, 2), np.float32)
    saved = live.copy()
    policy.dirty["w"][:] = False
    live[[3, 17, 30]] += 1.0
    policy.touch("w", np.array([3, 17, 30, 31]))  # 31 touched but unchanged
    assert policy.rows_per_checkpoint(40, 2) == 20
    np.testing.assert_array_equal(policy.select("w", live, saved, 2), [3, 17, 30])
    assert PriorityPolicy.select(policy, "w", live, saved, 2).size == 20  # the dense policy fills
