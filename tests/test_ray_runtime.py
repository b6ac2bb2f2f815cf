"""The Ray runtime: same numbers as the local runtime, real SIGKILLs, recovery, clear errors."""

import ipaddress
import os
import signal
import time

import numpy as np
import pytest
from runtime_helpers import close, live_processes, make_trainer, run_steps, saved_rows, stat_fields

from scar.errors import ScarError, StoreError
from scar.runtime.local import LocalCluster


def gone(pid: int, polls: int = 500) -> bool:
    """The process has exited (a zombie not yet reaped by its parent counts as exited)."""
    for _ in range(polls):
        fields = stat_fields(pid)
        if fields is None or fields[0] in "ZX":
            return True
        time.sleep(0.01)
    return False


def actor_processes() -> set[int]:
    """Pids of the live processes of this project's Ray actors (shards and workers)."""
    out = set()
    for pid in live_processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if cmd.startswith((b"ray::ShardServer", b"ray::WorkerNode")):
            out.add(pid)
    return out


def test_ray_and_local_runtimes_give_the_same_trajectory(ray_cluster, tmp_path):
    kw = dict(shards=3, workers=2, optimizer="sgd", iterations=12)
    remote = make_trainer(ray_cluster, tmp_path / "ray", **kw)
    local = make_trainer(LocalCluster(), tmp_path / "local", **kw)
    run_steps(remote, 12)
    run_steps(local, 12)
    a = np.array([f for _, f in remote.trajectory])
    b = np.array([f for _, f in local.trajectory])
    assert len(a) == 13 and a[-1] < a[0]
    # Ray runs actors with one BLAS thread: sums may be ordered differently, to float precision
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    np.testing.assert_allclose(remote.tables["weights"], local.tables["weights"], atol=1e-6)
    # both wrote the same checkpoints (once the background writes are done)
    assert remote.close() == local.close() == [12, 12, 12]
    for k in range(3):
        np.testing.assert_allclose(
            saved_rows(remote.cfg.store, k), saved_rows(local.cfg.store, k), atol=1e-6
        )


def test_sigkilled_shard_is_replaced_and_partially_restored_then_a_dead_worker_is_replaced(
    ray_cluster, tmp_path
):
    t = make_trainer(
        ray_cluster,
        tmp_path,
        shards=3,
        workers=1,
        checkpoint="priority",
        fraction=0.25,
        period=8,
        async_writes=True,
    )
    run_steps(t, 9)
    old_pid = t.shards[1].meta["pid"]
    standby_pid = ray_cluster.get(t.standby, ray_cluster.call(t.standby, "pid"))
    before = t.tables["weights"].copy()
    t.kill([1])
    assert gone(old_pid)  # the process is really dead
    after = t.refresh()["weights"]
    # the standby process became shard 1, and a new standby was started for the next loss
    assert t.shards[1].meta["pid"] == standby_pid != old_pid
    next_pid = ray_cluster.get(t.standby, ray_cluster.call(t.standby, "pid"))
    assert next_pid not in (standby_pid, old_pid)
    rows = t.layout.rows(1)["weights"]
    survivors = np.setdiff1d(np.arange(before.shape[0]), rows)
    np.testing.assert_array_equal(after[survivors], before[survivors])
    np.testing.assert_array_equal(after[rows], saved_rows(t.cfg.store, 1))
    assert not np.array_equal(after[rows], before[rows])  # restored from older saves
    f = t.failures[0]
    assert (f.iteration, f.shards, f.resume_iteration) == (9, [1], 9)
    assert f.rows_restored == len(rows) and f.bytes_restored == after[rows].nbytes
    assert f.perturbation_norm == pytest.approx(
        np.linalg.norm(after[rows] - before[rows]), rel=1e-5
    )
    assert f.restored_from[0] >= f.committed_before[0]  # nothing committed was lost
    run_steps(t, 3)  # the run goes on
    assert t.iteration == 12 and t.trajectory[-1][1] < t.trajectory[0][1]
    # a dead standby is no replacement: a new process is started instead
    os.kill(next_pid, signal.SIGKILL)
    assert gone(next_pid)
    before = t.tables["weights"].copy()
    t.kill([0])
    after = t.refresh()["weights"]
    assert t.shards[0].meta["pid"] not in (next_pid, standby_pid)
    rows = t.layout.rows(0)["weights"]
    np.testing.assert_array_equal(after[rows], saved_rows(t.cfg.store, 0))
    survivors = np.setdiff1d(np.arange(before.shape[0]), rows)
    np.testing.assert_array_equal(after[survivors], before[survivors])
    run_steps(t, 1)
    # a dead worker is replaced by a new process, and the iteration it failed runs again
    dead = t.workers[0].meta["pid"]
    os.kill(dead, signal.SIGKILL)
    assert gone(dead)
    at = t.iteration
    run_steps(t, 1)  # finds it dead: replaced, nothing applied
    assert t.iteration == at and t.worker_failures[0].workers == [0]
    assert t.workers[0].meta["pid"] != dead
    run_steps(t, 1)
    assert t.iteration == at + 1
    close(t)


def test_full_recovery_rolls_every_shard_back_then_an_unwritable_store_is_an_error(
    ray_cluster, tmp_path
):
    t = make_trainer(
        ray_cluster,
        tmp_path,
        shards=3,
        workers=1,
        checkpoint="full",
        period=5,
        recovery="full",
        async_writes=False,
    )
    run_steps(t, 10)
    at10 = t.tables["weights"].copy()
    run_steps(t, 2)
    t.kill([2])
    np.testing.assert_array_equal(t.refresh()["weights"], at10)
    assert t.iteration == 10 and t.failures[0].resume_iteration == 10
    assert t.failures[0].rows_restored == at10.shape[0]  # every row of every shard
    run_steps(t, 3)
    assert t.iteration == 13
    data = tmp_path / "store" / "shard-0" / "data"
    for f in data.iterdir():
        f.unlink()
    data.rmdir()
    data.write_text("not a directory")
    with pytest.raises(StoreError, match="shard 0"):
        run_steps(t, 5)
    close(t)
    # a store a shard cannot create is one clear line when the shards start, and the nodes
    # that did start are not left running
    before = actor_processes()
    with pytest.raises(ScarError) as e:
        make_trainer(ray_cluster, data / "under-a-file", shards=2, workers=1)
    assert str(e.value).startswith("shard 0 failed to start: cannot write checkpoint store ")
    assert "scar.errors" not in str(e.value)
    for _ in range(500):
        if actor_processes() <= before:
            break
        time.sleep(0.01)
    assert actor_processes() <= before


@pytest.mark.slow
def test_chaos_a_shard_killed_every_10_iterations_ends_within_1_percent(ray_cluster, tmp_path):
    from scar.runtime import TrainConfig, Trainer, build_split

    kw = dict(
        shards=4,
        workers=1,
        iterations=215,
        checkpoint="priority",
        fraction=0.125,
        period=10,
        recovery="partial",
        async_writes=True,
        fsync=True,
    )
    cfg = TrainConfig(runtime="ray", kill_every=10, store=str(tmp_path / "chaos"), **kw).validate()
    chaos = Trainer(cfg, build_split(cfg), ray_cluster, cfg.store).run()
    clean_cfg = TrainConfig(store=str(tmp_path / "clean"), **kw).validate()
    clean = Trainer(clean_cfg, build_split(clean_cfg), LocalCluster(), clean_cfg.store).run()
    assert len(chaos["failures"]) >= 21 and chaos["totals"]["iterations"] == 215
    f_chaos, f_clean = chaos["objective_final"], clean["objective_final"]
    assert abs(f_chaos - f_clean) <= 0.01 * abs(f_clean)
    for f in chaos["failures"]:
        # kills land right after a checkpoint was handed to the background writer: whatever the
        # shard had reported committed is what its replacement restored from (or newer)
        assert f["restored_from"][0] >= f["committed_before"][0] >= 0
        assert f["rows_restored"] > 0 and f["perturbation_norm"] is not None
    assert chaos["totals"]["committed_iteration"] == 215


def descendants(pid: int) -> set[int]:
    """``pid`` and every live process below it (Ray's GCS, raylet, agents and actors)."""
    children: dict[int, list[int]] = {}
    for p, fields in live_processes().items():
        children.setdefault(int(fields[1]), []).append(p)
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += children.get(p, [])
    return out


def bound_addresses(pids: set[int]) -> list[tuple[str, str]]:
    """(process name, IP address) of every listening TCP socket and every bound UDP socket
    that one of ``pids`` holds, from /proc/net (addresses as the kernel stores them)."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = name
    out = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{table}") as f:
            rows = [line.split() for line in f.read().splitlines()[1:]]
        for r in rows:
            listening = r[3] == "0A" if table.startswith("tcp") else True
            if r[9] in owner and listening:
                hexip = r[1].split(":")[0]
                # 32-bit words in host (little-endian) order: reverse each word's bytes
                raw = b"".join(
                    bytes.fromhex(hexip[i : i + 8])[::-1] for i in range(0, len(hexip), 8)
                )
                out.append((owner[r[9]], str(ipaddress.ip_address(raw))))
    return out


def test_the_cluster_listens_on_loopback_only(ray_cluster, tmp_path):
    """SPEC §6: no Ray process may accept traffic from outside the machine."""
    t = make_trainer(ray_cluster, tmp_path, shards=2, workers=1)
    run_steps(t, 1)
    bound = bound_addresses(descendants(os.getpid()))
    names = {n for n, _ in bound}
    assert {"gcs_server", "raylet"} <= names and len(bound) >= 4, bound  # not vacuous
    outside = []
    for name, ip in bound:
        a = ipaddress.ip_address(ip)
        a = getattr(a, "ipv4_mapped", None) or a
        if not a.is_loopback:
            outside.append((name, ip))
    assert not outside, outside
    close(t)


def test_one_shard_one_worker_on_ray_applies_every_update(ray_cluster, tmp_path):
    remote = make_trainer(ray_cluster, tmp_path / "ray", shards=1, workers=1, iterations=4)
    local = make_trainer(LocalCluster(), tmp_path / "local", shards=1, workers=1, iterations=4)
    run_steps(remote, 4)
    run_steps(local, 4)
    assert remote.trajectory[-1][1] < remote.trajectory[0][1]
    np.testing.assert_allclose(
        remote.tables["weights"], local.tables["weights"], rtol=1e-5, atol=1e-6
    )
    close(remote)
    close(local)


def test_rays_paragraphs_about_the_shards_we_killed_are_dropped_and_others_kept(
    ray_cluster, monkeypatch
):
    """Ray's driver prints a paragraph for every worker process that dies: the ones about the
    shard processes the cluster SIGKILLed on purpose are noise in a failure run; any other
    death must still be printed."""
    from ray._private import worker

    from scar.runtime import ray_ps

    printed = []
    monkeypatch.setattr(worker, "print_to_stdstream", lambda data, **kw: printed.append(data))
    monkeypatch.setattr(ray_ps, "KILLED", {424242})
    ray_ps.quiet_kills()
    death = "A worker died or was killed while executing a task by an unexpected system error. Worker IP address: 127.0.0.1 Worker PID: {} Worker exit type: SYSTEM_ERROR"  # fmt: skip
    for pid in (424242, 515151):
        worker.print_to_stdstream(
            {"lines": [death.format(pid)], "pid": "raylet", "is_err": False}, ignore_prefix=False
        )
    worker.print_to_stdstream(  # a worker's own output: never filtered
        {"lines": ["Worker PID: 424242"], "pid": 99, "is_err": False}, ignore_prefix=False
    )
    assert [d["lines"] for d in printed] == [[death.format(515151)], ["Worker PID: 424242"]]
