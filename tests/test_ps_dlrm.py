"""The DLRM on the parameter server (``scar train --model dlrm``): one worker follows the
single-process torch model step for step, pulls read only the embedding rows a batch uses, a
SIGKILLed shard gets its rows and its Adagrad state back from its store, the command line
offers the model, and the user-style example (its own recommender) trains through kills."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from runtime_helpers import close, make_trainer, run_steps, saved_rows, scar_train

from scar.runtime.local import LocalCluster

DLRM = dict(model="dlrm", dataset="movielens-100k", hyper={"batch_size": 256, "eval_size": 500})
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ps_recommender.py"


def test_one_worker_follows_the_torch_model_and_the_loss_falls(tmp_path):
    from scar.algorithms.registry import build

    t = make_trainer(LocalCluster(), tmp_path, **DLRM, shards=3, workers=1, eval_every=5)
    assert t.cfg.optimizer == "adagrad"
    reference = build("dlrm", "movielens-100k", "adagrad", DLRM["hyper"])  # same seed, init
    for it in range(1, 4):
        t.step()
        reference.step(reference.tables.arrays, it)  # torch's Adagrad, dense gradients
    tables = t.tables
    for name, p in reference.net.named_parameters():
        want = p.detach().reshape(-1, p.shape[-1]).numpy()
        np.testing.assert_allclose(tables[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
    run_steps(t, 17)
    losses = [f for _, f in t.trajectory]
    assert [i for i, _ in t.trajectory] == [0, 5, 10, 15, 20]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0] - 0.03
    close(t)


class TableCounter(LocalCluster):
    """The local cluster, counting per table the rows the shards' reads return."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def call(self, h, method, *args, num_returns=1):
        out = super().call(h, method, *args, num_returns=num_returns)
        if h.role == "shard" and method == "read" and out.error is None:
            for name, values in out.value.items():
                self.rows[name] = self.rows.get(name, 0) + len(values)
        return out


def test_pulls_read_the_embedding_rows_of_each_workers_batch_only(tmp_path):
    cluster = TableCounter()
    t = make_trainer(cluster, tmp_path, **DLRM, shards=3, workers=2, eval_every=1000)
    data, split = t.split.algorithm.data, t.split
    ranges = split._ranges(2)
    for it in range(1, 4):
        cluster.rows.clear()
        run_steps(t, 1)
        want = Counter()
        for (lo, _), local in zip(ranges, split.worker_args(it, 2), strict=True):
            mine = local + lo
            for f, name in enumerate(split.fields):
                want[name] += len(np.unique(data.ids[mine, f]))
            (bag,) = data.bags
            want["bags.0.weight"] += len(np.unique(bag.select(mine)[0]))
            for name in split.dense_shapes:  # the MLPs: every row, for each worker
                want[name] += t.layout.shapes[name][0]
        assert cluster.rows == dict(want)
        assert want["emb.0.weight"] < t.layout.shapes["emb.0.weight"][0] / 2  # users
    close(t)


def test_a_sigkilled_shard_gets_its_rows_and_adagrad_state_back_on_ray(ray_cluster, tmp_path):
    kw = dict(DLRM, shards=2, workers=1, checkpoint="priority", fraction=0.125, period=16)
    t = make_trainer(ray_cluster, tmp_path, **kw, async_writes=False, iterations=12)
    slots = [f"{n}.sum" for n in t.layout.shapes]

    def read(k, names):
        h = t.shards[k]
        return ray_cluster.get(h, ray_cluster.call(h, "read", dict.fromkeys(names)))

    run_steps(
        t, 5
    )  # saves: every row at 0, then 1/8 of them every 2nd iteration (the most changed)
    before = read(1, slots)
    t.kill([1])
    t.refresh()  # found dead, replaced, restored from its store
    after = read(1, [*t.layout.shapes, *slots])
    for name in [*t.layout.shapes, *slots]:
        np.testing.assert_array_equal(after[name], saved_rows(t.cfg.store, 1, name), name)
    changed = [n for n in slots if not np.array_equal(after[n], before[n])]
    assert {"emb.0.weight.sum", "emb.1.weight.sum"} <= set(changed)  # not all saved at 4
    (f,) = t.failures
    assert (f.iteration, f.shards, f.resume_iteration) == (5, [1], 5)
    run_steps(t, 7)
    assert t.iteration == 12 and np.isfinite(t.trajectory[-1][1])
    assert t.trajectory[-1][1] < t.trajectory[0][1]
    close(t)


def test_scar_train_offers_the_dlrm_and_refuses_an_optimizer_it_has_not(tmp_path):
    out = tmp_path / "r.json"
    args = ["--model", "dlrm", "--dataset", "movielens-100k", "--shards", "2", "--workers", "2"]
    r = scar_train(*args, "--iterations", "3", "--batch-size", "64", "--no-fsync", "-q", "-o", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["config"]["optimizer"] == "adagrad" and doc["iterations"] == [0, 1, 2, 3]
    assert np.isfinite(doc["objective"]).all()
    r = scar_train(*args, "--optimizer", "sgd", "-o", tmp_path / "bad.json")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--optimizer" in lines[0], r.stderr
    assert "adagrad" in lines[0] and not (tmp_path / "bad.json").exists()


def test_the_example_trains_its_own_recommender_on_ray_through_kills(ray_cluster, tmp_path):
    import ray

    args = ["--shards", "2", "--workers", "1", "--iterations", "20", "--kill-every", "10"]
    args += ["--ray-address", ray.get_runtime_context().gcs_address, "--json"]
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["failures"] == 1 and doc["iterations"] == 20
    assert doc["objective_after"] < doc["objective_before"] - 0.01
