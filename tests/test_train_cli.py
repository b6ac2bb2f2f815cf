"""`scar train`: every bad flag ends in one line and exit 2; the result JSON's schema."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from runtime_helpers import live_processes, scar_train

scar = scar_train


BAD = [
    (["--runtime", "mpi"], "--runtime"),
    (["--model", "cnn"], "--model"),
    (["--dataset", "mnist-typo"], "--dataset"),
    (["--model", "sparse-lr", "--dataset", "digits"], "--dataset"),
    (["--checkpoint", "sometimes"], "--checkpoint"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.5"], "--fraction"),
    (["--recovery", "magic"], "--recovery"),
    (["--shards", "0"], "--shards"),
    (["--workers", "0"], "--workers"),
    (["--period", "0"], "--period"),
    (["--iterations", "-3"], "--iterations"),
    (["--kill-at", "500", "--iterations", "10"], "--kill-at"),
    (["--kill-shards", "5", "--shards", "4", "--kill-at", "3"], "--kill-shards"),
    (["--kill-at", "3", "--kill-every", "5"], "--kill-every"),
    (["--kill-shards", "2"], "--kill-shards"),
    (["--kill-shards", "2", "--kill-every", "5"], "--kill-shards"),
    (["--kill-every", "0"], "--kill-every"),
    (["--shards", "two"], "--shards"),
    (["--lr", "-1"], "--lr"),
    (["--timeout", "0"], "--timeout"),
    (["--hash-bits", "12"], "--hash-bits"),
    (["--model", "sparse-lr", "--hash-bits", "40"], "hash-bits"),
    (["--optimizer", "adam"], "--optimizer"),
    (["--model", "mf", "--dataset", "reuters"], "--dataset"),
    (["--model", "lda", "--dataset", "reuters", "--optimizer", "sgd"], "--optimizer"),
    (["--model", "mf", "--dataset", "movielens-100k", "--lr", "0.1"], "lr"),
    (["--model", "sparse-lr", "--rank", "3", "--examples", "100"], "rank"),
    (["--store", "s3://"], "--store"),
    (["--store", "memory://"], "--store"),
]


@pytest.mark.parametrize("args,names", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_end_in_one_line_naming_the_flag(tmp_path, args, names):
    r = scar(*args, "--output", str(tmp_path / "r.json"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and names in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_unwritable_output_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    r = scar("--output", str(tmp_path / "file" / "r.json"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_train_writes_the_documented_json(tmp_path):
    out = tmp_path / "r.json"
    r = scar(
        "--runtime",
        "local",
        "--model",
        "mlr",
        "--dataset",
        "digits",
        "--shards",
        "4",
        "--workers",
        "2",
        "--checkpoint",
        "full",
        "--period",
        "5",
        "--recovery",
        "full",
        "--iterations",
        "20",
        "--kill-at",
        "13",
        "--kill-shards",
        "2",
        "--no-fsync",
        "--store",
        str(tmp_path / "store"),
        "--seed",
        "3",
        "-q",
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["config"]["runtime"] == "local" and d["config"]["kill_at"] == 13
    # 20 iterations + those re-done after rolling back from 13 to the newest committed
    # checkpoint: 10, or 5 if the async save at 10 was still queued when the shards were
    # killed (a kill loses what was not committed, as a real one does)
    (f,) = d["failures"]
    back = f["resume_iteration"]
    assert back in (5, 10) and back >= max(f["committed_before"])
    assert d["totals"]["iterations"] == 20 and d["totals"]["steps"] == 20 + 13 - back
    assert d["iterations"] == list(range(0, 14)) + list(range(back + 1, 21))
    assert len(d["objective"]) == len(d["iterations"])
    assert d["objective_final"] == d["objective"][-1]
    assert d["objective"][-1] < d["objective"][0]
    assert set(f) >= {
        "iteration",
        "shards",
        "detection_seconds",
        "restore_seconds",
        "rows_restored",
        "bytes_restored",
        "perturbation_norm",
    }
    assert f["iteration"] == 13 and len(f["shards"]) == 2
    assert f["rows_restored"] == 65 and f["bytes_restored"] == 65 * 10 * 4
    assert f["perturbation_norm"] > 0
    t = d["totals"]
    assert {"wall_seconds", "checkpoint_seconds", "recovery_seconds"} <= set(t)
    assert t["background_checkpoint_cpu_seconds"] > 0  # async writes (the default)
    saves = 2 + sum(i > back for i in (5, 10, 15, 20))  # periodic: 5, 10, then after the rollback
    assert t["checkpoint_bytes"] == saves * 65 * 10 * 4
    assert t["committed_iteration"] == 20


def test_sparse_lr_trains_from_the_command_line(tmp_path):
    out = tmp_path / "r.json"
    r = scar(
        "--model",
        "sparse-lr",
        "--examples",
        "4000",
        "--hash-bits",
        "10",
        "--fields",
        "6",
        "--batch-size",
        "500",
        "--iterations",
        "16",
        "--kill-every",
        "5",
        "--shards",
        "3",
        "--no-fsync",
        "-q",
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["config"]["dataset"] == "criteo-synth" and d["config"]["synth"]["examples"] == 4000
    assert [f["iteration"] for f in d["failures"]] == [5, 10, 15]
    assert d["objective"][-1] < d["objective"][0]


MODEL_RUNS = {
    "mf": (["--dataset", "movielens-100k", "--rank", "3"], {"users": 943, "items": 1682}),
    "lda": (["--dataset", "reuters", "--topics", "6"], {"word_topic": 4258}),
}


@pytest.mark.parametrize("model", sorted(MODEL_RUNS))
def test_mf_and_lda_train_the_same_on_both_runtimes_through_a_kill(ray_cluster, tmp_path, model):
    """One run per runtime (ray in this process, on the session's cluster), synchronous
    writes so both restore the same checkpoint: the same objective at every iteration."""
    from scar.cli import main
    from scar.state import Sharding

    extra, rows = MODEL_RUNS[model]
    args = ["--model", model, *extra, "--shards", "3", "--workers", "2"]
    args += ["--checkpoint", "priority", "--fraction", "0.25", "--period", "3"]
    args += ["--iterations", "10", "--kill-at", "7", "--recovery", "partial", "--seed", "1"]
    args += ["--no-async", "--no-fsync", "-q"]
    local = tmp_path / "local.json"
    r = scar("--runtime", "local", *args, "--output", str(local))
    assert r.returncode == 0, r.stderr
    with pytest.raises(SystemExit) as done:
        main(["train", "--runtime", "ray", *args, "--output", str(tmp_path / "ray.json")])
    assert done.value.code == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "ray"))
    assert a["objective"] == b["objective"] and a["iterations"] == list(range(11))
    assert a["objective"][-1] < a["objective"][0]
    for d in (a, b):
        (f,) = d["failures"]
        assert f["iteration"] == f["resume_iteration"] == 7
        (k,) = f["shards"]
        assert f["rows_restored"] == sum(len(Sharding(n, 3).rows_of(k)) for n in rows.values())
        assert f["perturbation_norm"] > 0
    assert a["failures"][0]["shards"] == b["failures"][0]["shards"]
    assert b["config"]["runtime"] == "ray" and b["totals"]["committed_iteration"] == 10
    # synchronous writes: no background work, the saves are in checkpoint_seconds
    assert a["totals"]["background_checkpoint_cpu_seconds"] == 0.0
    assert b["totals"]["background_checkpoint_cpu_seconds"] == 0.0


def session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a run started in a session of its own, Ray's included)."""
    return [p for p, fields in live_processes().items() if int(fields[3]) == sid]


@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_ctrl_c_stops_the_run_cleanly_and_writes_the_run_so_far(tmp_path, runtime):
    """Ctrl-C in a terminal signals the whole foreground process group: on Ray that includes
    the GCS and raylet the driver started, which must keep serving until the driver is done.
    The run stops, every shard's store is closed intact, the result so far is written, exit
    130, and no process of the run is left."""
    from scar.store import open_store
    from scar.store.tools import verify

    out, store = tmp_path / "r.json", tmp_path / "store"
    args = ["--runtime", runtime, "--model", "mlr", "--dataset", "digits", "--shards", "2"]
    args += ["--workers", "1", "--period", "4", "--iterations", "1000000", "--no-fsync"]
    p = subprocess.Popen(
        [sys.executable, "-m", "scar.cli", "train", *args, "--store", str(store), "-q",
         "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # running: both shards have committed more than their first checkpoint
        while not all(
            len(list((store / f"shard-{k}" / "manifests").glob("v*.json"))) >= 2 for k in range(2)
        ):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err
    (line,) = err.strip().splitlines()
    assert line.startswith("scar: interrupted after ") and str(out) in line
    d = json.loads(out.read_text())
    n = d["totals"]["iterations"]
    assert d["interrupted"] is True and 0 < n < 1000000 and len(d["objective"]) == n + 1
    for k in range(2):
        with open_store(str(store / f"shard-{k}"), readonly=True) as s:
            rep = verify(s)
            assert rep.ok and rep.spares == [], (rep.bad, rep.spares)  # closed by the run
            assert s.latest().iteration >= d["totals"]["committed_iteration"] >= n - 4
    for _ in range(300):  # Ray's processes went down with the driver
        if not session_processes(p.pid):
            break
        time.sleep(0.1)
    assert session_processes(p.pid) == []
