"""The parameter server's data path and its replaceable workers: sparse pulls move only the
rows a batch needs, shard to worker; the coordinator moves no table data while it iterates; a
killed worker is replaced and its iteration redone (stateless workers: the same trajectory as a
run without the kill; LDA: the replacement's topic assignments from the last checkpoint
iteration, with the counts corrected to stay exact); bad updates are refused by name."""

import numpy as np
import pytest
from runtime_helpers import close, lda_counts, make_trainer, run_steps

from scar.algorithms.lda_gibbs import LDA
from scar.errors import ScarError
from scar.runtime.local import LocalCluster
from scar.runtime.split import Layout, Update


class CountingCluster(LocalCluster):
    """The local cluster, counting the rows every call to the shards returns, by method."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def call(self, h, method, *args, num_returns=1):
        out = super().call(h, method, *args, num_returns=num_returns)
        if h.role == "shard" and method in ("read", "pull") and out.error is None:
            n = sum(len(v) for v in out.value.values())
            self.rows[method] = self.rows.get(method, 0) + n
        return out


SPARSE = dict(model="sparse-lr", dataset="criteo-synth", shards=4, workers=2)
SPARSE.update(synth={"examples": 4000, "hash_bits": 14, "fields": 8}, hyper={"batch_size": 64})


def test_sparse_pulls_read_only_the_rows_a_batch_touches(tmp_path):
    cluster = CountingCluster()
    t = make_trainer(cluster, tmp_path, **SPARSE, eval_every=1000, iterations=1000)
    cluster.rows.clear()
    run_steps(t, 5)
    a = t.split.algorithm
    want = 0
    for it in range(1, 6):
        for lo, hi in t.split._ranges(2):
            b = a.batch(it)
            mine = a.data.idx[b[(b >= lo) & (b < hi)]]
            want += len(np.unique(mine)) + 1  # and the bias
    assert cluster.rows == {"read": want}  # no full pull: the objective was not asked for
    assert want < 5 * 2 * 200 < t.layout.shapes["weights"][0]
    close(t)


def test_sparse_pulls_give_the_dense_trajectory(tmp_path, monkeypatch):
    sparse = make_trainer(LocalCluster(), tmp_path / "s", **SPARSE)
    dense = make_trainer(LocalCluster(), tmp_path / "d", **SPARSE)
    monkeypatch.setattr(dense.split, "sparse_pulls", False)

    def full_tables_update(part):  # the worker before sparse pulls: every row
        from scar.algorithms.sparse_lr import logloss_gradient

        def update(tables, iteration, args):
            rows, g, _ = logloss_gradient(part.idx[args], part.y[args], tables["weights"])
            return {"weights": Update(rows, g)}

        return update

    for w in dense.workers:
        w.actor.part.update = full_tables_update(w.actor.part)
    run_steps(sparse, 6)
    run_steps(dense, 6)
    assert sparse.trajectory == dense.trajectory
    np.testing.assert_array_equal(sparse.tables["weights"], dense.tables["weights"])
    close(sparse)
    close(dense)


@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_a_killed_worker_is_replaced_and_the_run_is_the_run_without_the_kill(
    runtime, ray_cluster, tmp_path
):
    cluster = ray_cluster if runtime == "ray" else LocalCluster()
    kw = dict(SPARSE, iterations=9, checkpoint="priority", fraction=0.25, period=4)
    killed = make_trainer(cluster, tmp_path / "k", **kw, kill_workers=3)
    clean = make_trainer(LocalCluster(), tmp_path / "c", **kw)
    out = killed.run()
    run_steps(clean, 9)
    assert [f["iteration"] for f in out["worker_failures"]] == [3, 6]
    assert all(len(f["workers"]) == 1 and f["workers"][0] in (0, 1) for f in out["worker_failures"])
    assert out["totals"]["worker_failures"] == 2 and out["totals"]["steps"] == 9
    assert out["iterations"] == [i for i, _ in clean.trajectory]
    assert out["objective"] == [v for _, v in clean.trajectory]  # the redone iterations: exact
    close(clean)


@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_a_killed_lda_worker_gets_its_checkpointed_state_and_the_counts_stay_exact(
    runtime, ray_cluster, tmp_path
):
    cluster = ray_cluster if runtime == "ray" else LocalCluster()
    kw = dict(model="lda", dataset="reuters", hyper={"topics": 8}, shards=3, workers=2)
    kw.update(checkpoint="full", period=3, async_writes=False)
    t = make_trainer(cluster, tmp_path, **kw)
    run_steps(t, 5)  # snapshots of the workers' state at 3 (the last checkpoint iteration)
    z3 = t.worker_states(t._snapshots[3])[1]["z"].copy()
    t.kill_workers([1])
    run_steps(t, 1)  # finds it dead: replaced with its state of iteration 3, nothing applied
    f = t.worker_failures[0]
    assert (f.workers, f.state_from, t.iteration) == ([1], 3, 5)
    np.testing.assert_array_equal(t.worker_states()[1]["z"], z3)
    nwt, ndt = lda_counts(t)
    np.testing.assert_array_equal(nwt, t.tables[LDA.TABLE])  # counts agree with every z
    states = t.worker_states()
    np.testing.assert_array_equal(ndt, np.concatenate([s["doc_topic"] for s in states]))
    run_steps(t, 3)
    assert t.iteration == 8
    np.testing.assert_array_equal(lda_counts(t)[0], t.tables[LDA.TABLE])
    close(t)


def test_an_update_out_of_range_or_of_the_wrong_width_names_its_table():
    layout = Layout({"emb": (10, 4), "w": (3, 1)}, 2)
    with pytest.raises(ScarError, match=r"table 'emb'.*0\.\.9"):
        layout.split({"emb": Update(np.array([2, 10]), np.zeros((2, 4)))})
    with pytest.raises(ScarError, match=r"table 'emb'.*shape \(2, 4\).*\(2, 3\)"):
        layout.split({"emb": Update(np.array([2, 5]), np.zeros((2, 3)))})
    with pytest.raises(ScarError, match=r"table 'emb'.*sorted unique"):
        layout.split({"emb": Update(np.array([5, 2]), np.zeros((2, 4)))})
    with pytest.raises(ScarError, match=r"unknown table 'v'"):
        layout.split({"v": Update(None, np.zeros((3, 1)))})
    with pytest.raises(ScarError, match=r"table 'w'.*shape \(3, 1\)"):
        layout.split({"w": Update(None, np.zeros((2, 1)))})
    with pytest.raises(ScarError, match=r"rows\(\): table 'emb'.*0\.\.9"):
        layout.check_request({"emb": [1, 11]})


def test_a_worker_returning_bad_rows_ends_the_run_with_that_error(tmp_path, monkeypatch):
    t = make_trainer(LocalCluster(), tmp_path, **SPARSE)
    part = type(t.split.parts(1)[0])
    monkeypatch.setattr(
        part,
        "update",
        lambda self, tables, it, args: {"weights": Update(np.array([-1]), np.zeros((1, 1)))},
    )
    with pytest.raises(ScarError, match="table 'weights'.*sorted unique ids"):
        run_steps(t, 1)
    close(t)


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_the_optimizer_rules_follow_torch(kind):
    """A table pushed every iteration: AdagradRule and AdamRule give torch's Adagrad and Adam
    (to float32 rounding); a row never pushed keeps its value and its slots."""
    import torch

    from scar.runtime.split import AdagradRule, AdamRule

    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(6, 3)).astype(np.float32)
    rule = AdagradRule(lr=0.1, initial=0.1) if kind == "adagrad" else AdamRule(lr=0.05)
    slots = {s: np.full((6, w or 3), init, np.float32) for s, (w, init) in rule.slots("t").items()}
    live = w0.copy()
    p = torch.nn.Parameter(torch.from_numpy(w0[:5].copy()))
    opt = (
        torch.optim.Adagrad([p], lr=0.1, initial_accumulator_value=0.1)
        if kind == "adagrad"
        else torch.optim.Adam([p], lr=0.05)
    )
    for _ in range(7):
        g = rng.normal(size=(5, 3)).astype(np.float32)
        rule.apply("t", live, np.arange(5), g * 4, {"scale": 0.25}, slots)
        p.grad = torch.from_numpy(g)
        opt.step()
    np.testing.assert_allclose(live[:5], p.detach().numpy(), rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(live[5], w0[5])
    for s, (_, init) in rule.slots("t").items():
        assert (slots[s][5] == init).all()


def test_optimizer_slots_live_on_the_shards_and_come_back_with_their_rows(tmp_path, monkeypatch):
    """Sparse LR with Adagrad on the shards: the slot table is checkpointed with its rows
    (same row ids, same versions) and a partial recovery restores both."""
    from scar.runtime.split import AdagradRule, SparseLRSplit
    from scar.store import open_store
    from scar.store.urls import shard_url

    monkeypatch.setattr(SparseLRSplit, "rule", AdagradRule(lr=0.05))
    kw = dict(SPARSE, checkpoint="priority", fraction=0.25, period=4, async_writes=False)
    t = make_trainer(LocalCluster(), tmp_path, **kw)
    run_steps(t, 6)
    shard = t.shards[2].actor
    before = {n: shard.state[n].copy() for n in ("weights", "weights.sum")}
    assert (before["weights.sum"] > 0).any()
    t.kill([2])
    run_steps(t, 1)  # recovers shard 2 from its store, then runs iteration 6 again
    s = open_store(shard_url(t.cfg.store, 2), readonly=True)
    np.testing.assert_array_equal(s.saved_iteration("weights"), s.saved_iteration("weights.sum"))
    s.close()
    assert t.failures[0].rows_restored == 2 * len(before["weights"])
    assert t.iteration == 6 and np.isfinite(t.shards[2].actor.state["weights.sum"]).all()
    close(t)


def test_rebuild_on_the_runtime_recomputes_ldas_lost_counts_exactly(tmp_path):
    kw = dict(model="lda", dataset="reuters", hyper={"topics": 8}, shards=3, workers=2)
    kw.update(checkpoint="priority", fraction=0.25, period=4, recovery="rebuild")
    t = make_trainer(LocalCluster(), tmp_path, **kw, async_writes=False)
    run_steps(t, 5)
    t.kill([1])
    run_steps(t, 1)  # recovers shard 1: restored, then its counts rebuilt from every z
    f = t.failures[0]
    assert f.perturbation_norm == 0.0  # the counts before the kill, exactly
    assert f.rows_rebuilt == len(t.layout.rows(1)[LDA.TABLE])
    np.testing.assert_array_equal(lda_counts(t)[0], t.tables[LDA.TABLE])
    close(t)


def test_rebuild_on_the_runtime_solves_als_last_side_again(tmp_path):
    kw = dict(model="mf", dataset="movielens-100k", shards=3, workers=2, recovery="rebuild")
    kw.update(checkpoint="priority", fraction=0.25, period=4)
    t = make_trainer(LocalCluster(), tmp_path, **kw, async_writes=False)
    run_steps(t, 5)  # odd: the users were solved last, from the items
    before = {n: t.tables[n].copy() for n in ("users", "items")}
    t.kill([2])
    run_steps(t, 1)
    rows = t.layout.rows(2)
    f = t.failures[0]
    assert f.rows_rebuilt == len(rows["users"])
    items_moved = np.linalg.norm(t.tables["items"][rows["items"]] - before["items"][rows["items"]])
    assert f.perturbation_norm >= items_moved > 0  # the restored items moved, and users with them
    # the rebuilt users are the solution given the items as they are now
    from scar.algorithms.mf_als import MF

    algo: MF = t.split.algorithm
    want = {n: t.tables[n].copy() for n in ("users", "items")}
    algo.rebuild(want, {"users": rows["users"]}, 5)
    np.testing.assert_array_equal(t.tables["users"], want["users"])
    close(t)


def test_rebuild_is_refused_for_a_model_without_it(tmp_path):
    from scar.errors import ConfigError
    from scar.runtime import TrainConfig

    with pytest.raises(ConfigError, match="--recovery rebuild: model sparse-lr"):
        TrainConfig(model="sparse-lr", dataset="criteo-synth", recovery="rebuild").validate(True)


def test_a_replacement_that_dies_while_starting_is_started_again(tmp_path):
    """As when a machine is lost and the cluster places a replacement there before it knows:
    the first replacement of each node is dead on arrival; the run goes on with the second."""

    class Flaky(LocalCluster):
        def __init__(self):
            self.started = {"worker": 0, "shard": 0, "standby": 0}

        def start(self, role, index, cls, *args):
            h = super().start(role, index, cls, *args)
            if role in self.started:
                self.started[role] += 1
                # dead on arrival: the first replacement worker, the standby shard, and the
                # shard started instead of that standby
                if self.started[role] == {"worker": 3, "shard": 5, "standby": 1}[role]:
                    self.kill(h)
            return h

    kw = dict(SPARSE, iterations=6, checkpoint="priority", fraction=0.25, period=4)
    t = make_trainer(Flaky(), tmp_path, **kw)
    run_steps(t, 2)
    t.kill_workers([1])
    t.kill([3])
    run_steps(t, 2)
    assert t.iteration == 3 and len(t.worker_failures) == 1 and len(t.failures) == 1
    assert t.cluster.started == {"worker": 4, "shard": 6, "standby": 2}
    close(t)


def test_a_request_may_mix_whole_tables_and_rows():
    layout = Layout({"emb": (10, 2), "mlp": (3, 4)}, 3)
    tables = {"emb": np.arange(20.0).reshape(10, 2), "mlp": np.arange(12.0).reshape(3, 4)}
    want = layout.check_request({"emb": [7, 2, 7], "mlp": None})
    assert want["emb"].tolist() == [2, 7]
    per_shard = layout.locate(want)
    shards = layout.scatter(tables)
    pulls = [
        {n: s[n] if ids is None else s[n][ids] for n, ids in req.items()}
        for s, req in zip(shards, per_shard, strict=True)
    ]
    got = layout.gather(want, pulls)
    np.testing.assert_array_equal(got["emb"], tables["emb"][[2, 7]])
    np.testing.assert_array_equal(got["mlp"], tables["mlp"])


def test_more_shards_than_rows_is_refused_before_any_node_starts(tmp_path):
    from scar.errors import ConfigError

    class Counting(LocalCluster):
        started = 0

        def start(self, *a):
            Counting.started += 1
            return super().start(*a)

    with pytest.raises(
        ConfigError, match=r"--shards 100: more shards than rows .*'weights', has 65"
    ):
        make_trainer(Counting(), tmp_path, model="mlr", dataset="digits", shards=100)
    assert Counting.started == 0


def test_sparse_checkpoints_write_the_rows_changed_not_a_share_of_the_table(tmp_path):
    """Priority saves on the shards of a sparse model write only rows that changed since
    their last save: with few rows touched per iteration, less than the policy's quota
    (1/8 of a shard's rows per save); the run reports what the saves wrote."""
    kw = dict(SPARSE, iterations=16, checkpoint="priority", fraction=1 / 8, period=16)
    t = make_trainer(LocalCluster(), tmp_path, **kw)
    out = t.run()
    n = t.layout.shapes["weights"][0]
    quota = 16 // 2 * (n // 8) * 4  # 8 saves of n/8 rows of 4 bytes, summed over the shards
    pushed = sum(  # rows pushed per 2 iterations bound what a save can hold
        len(np.unique(t.split.algorithm.data.idx[t.split.algorithm.batch(it)])) + 1
        for it in range(1, 17)
    )
    assert 0 < out["totals"]["checkpoint_bytes"] <= 4 * pushed < quota


@pytest.mark.parametrize("scheme", ["range", "hash"])
def test_rows_are_located_and_updates_split_at_their_shard_positions(scheme):
    layout = Layout({"emb": (1003, 2)}, 7, scheme)  # shards of unequal sizes
    rng = np.random.default_rng(3)
    ids = np.unique(rng.integers(0, 1003, 300))
    owner = layout.shardings["emb"].shard_of(ids)
    located = layout.locate({"emb": ids})
    values = rng.standard_normal((len(ids), 2)).astype(np.float32)
    parts = layout.split({"emb": Update(ids, values)})
    for k in range(7):
        rows = layout.rows(k)["emb"]
        np.testing.assert_array_equal(rows[located[k]["emb"]], ids[owner == k])
        np.testing.assert_array_equal(rows[parts[k]["emb"].rows], ids[owner == k])
        np.testing.assert_array_equal(parts[k]["emb"].values, values[owner == k])
