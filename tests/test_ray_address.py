"""`scar train --runtime ray --ray-address HOST:PORT` joins an existing Ray cluster, spreads its
shards over the cluster's nodes and leaves the cluster running; a wrong address ends in one
line and exit status 2, without waiting longer than --timeout.

Everything runs in subprocesses: this test session's own driver may be connected to the
session's local cluster already (conftest.py), and a process joins one cluster only. The
cluster here is this module's own (two nodes on 127.0.0.1), stopped by its process groups at
the end; never with `ray stop`, which would stop every Ray cluster on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))
# loopback only (see ray_ps.LOOPBACK_ENV), and no usage report leaves the machine
ENV = {
    **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# A second node on this machine, as `ray start --address` would add it. `ray start` refuses to
# add a node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and without that setting it turns
# 127.0.0.1 into the machine's outward address; so the node is started as Ray's own test
# clusters start theirs (ray.cluster_utils.Cluster.add_node), on 127.0.0.1.
SECOND_NODE = """
import signal, sys, time
from ray._private.node import Node
from ray._private.parameter import RayParams

params = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=2,
                   node_manager_port=0, min_worker_port=0, max_worker_port=0,
                   include_log_monitor=False)
node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(60)
"""

# A driver of its own: RayCluster(address=...) starts four actors, reports their nodes, then
# kills one as on this machine (os.kill) and one as on another (the actor kills itself).
SPREAD = """
import json, os, sys, time
from scar.runtime.local import NodeLost
from scar.runtime.ray_ps import RayCluster

class Probe:
    def pid(self):
        return os.getpid()

cluster = RayCluster(address=sys.argv[1], timeout=60)
# The second node has just been started: wait until the GCS lists it (the run places its
# actors on the nodes live when each starts).
ray = cluster.ray
deadline = time.monotonic() + 120
while time.monotonic() < deadline and sum(n["Alive"] for n in ray.nodes()) < 2:
    time.sleep(0.5)
handles = [cluster.start("shard", k, Probe) for k in range(4)]
nodes = [cluster.node_of(h, timeout=60) for h in handles]
gone = []
for h, elsewhere in ((handles[0], False), (handles[1], True)):
    h.meta["pid"] = cluster.get(h, cluster.call(h, "pid"), 60)
    if elsewhere:
        cluster._on_this_machine = lambda h: False
    cluster.kill(h)
    try:
        cluster.get(h, cluster.call(h, "pid"), 60)
        gone.append(False)
    except NodeLost:
        gone.append(True)
alive = [cluster.get(h, cluster.call(h, "pid"), 60) for h in handles[2:]]
cluster.shutdown()
print(json.dumps({"nodes": nodes, "gone": gone, "alive": alive}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """End ``proc`` and everything it started: SIGTERM to its process group, then SIGKILL to
    whatever of the group is left."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on 127.0.0.1, as a user starts one: its GCS port."""
    tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths are limited
    port = free_port()
    procs = []
    try:
        with open(os.path.join(tmp, "head.log"), "w") as log:
            procs.append(
                subprocess.Popen(
                    [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                     "--port", str(port), "--temp-dir", tmp, "--num-cpus", "2",
                     "--include-dashboard", "false"],
                    env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while not answers(port):
            assert procs[0].poll() is None, open(os.path.join(tmp, "head.log")).read()
            assert time.monotonic() < deadline, "the head's GCS did not come up"
            time.sleep(0.5)
        with open(os.path.join(tmp, "node.log"), "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SECOND_NODE, f"127.0.0.1:{port}"],
                    env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            )  # fmt: skip
        yield port
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


def scar(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scar.cli", "train", *args],
        capture_output=True, text=True, env=ENV, timeout=timeout,
    )  # fmt: skip


def test_a_run_joins_recovers_a_kill_and_leaves_the_cluster_running(cluster, tmp_path):
    out = tmp_path / "out.json"
    r = scar(
        "--runtime", "ray", "--ray-address", f"127.0.0.1:{cluster}", "--model", "mlr",
        "--dataset", "digits", "--shards", "4", "--workers", "2", "--iterations", "12",
        "--kill-at", "6", "--checkpoint", "priority", "--recovery", "partial",
        "-o", str(out), "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["config"]["ray_address"] == f"127.0.0.1:{cluster}"
    assert len(d["failures"]) == 1 and d["totals"]["failures"] == 1
    assert d["totals"]["iterations"] == 12
    assert answers(cluster)  # the run disconnected; the cluster it joined still serves


def test_actors_are_spread_over_the_nodes_and_killed_on_either_machine(cluster):
    r = subprocess.run(
        [sys.executable, "-c", SPREAD, f"127.0.0.1:{cluster}"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(set(d["nodes"])) == 2, d["nodes"]  # both nodes hold actors
    assert d["nodes"][0::2] == [d["nodes"][0]] * 2 and d["nodes"][0] != d["nodes"][1]
    assert d["gone"] == [True, True]
    # the driver disconnected: its actors end with it, the cluster stays
    deadline = time.monotonic() + 60
    while any(running(pid) for pid in d["alive"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(running(pid) for pid in d["alive"])
    assert answers(cluster)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie until its raylet reaps it: as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("scar: error: ") and "--ray-address" in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--runtime", "ray", "--ray-address", "notanaddress"], "must be HOST:PORT"),
        (["--runtime", "ray", "--ray-address", "127.0.0.1:99999"], "must be HOST:PORT"),
        (["--runtime", "ray", "--ray-address", "auto"], "must be HOST:PORT"),
        (["--runtime", "local", "--ray-address", "127.0.0.1:1234"], "goes with --runtime ray"),
    ],
)
def test_a_bad_address_is_one_line(tmp_path, args, says):
    r = scar(*args, "-o", str(tmp_path / "r.json"), timeout=60)
    assert says in one_line_error(r)
    assert not (tmp_path / "r.json").exists()


def test_nobody_at_the_address_is_one_line_without_waiting(tmp_path):
    port = free_port()  # nobody listens there
    r = scar(
        "--runtime", "ray", "--ray-address", f"127.0.0.1:{port}", "--timeout", "5",
        "-o", str(tmp_path / "r.json"), timeout=30,
    )  # fmt: skip
    assert "no Ray cluster answers there" in one_line_error(r)


def test_something_not_ray_at_the_address_is_one_line_after_the_timeout(tmp_path):
    with socket.socket() as s:  # accepts connections (the kernel's backlog), says nothing
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        r = scar(
            "--runtime", "ray", "--ray-address", f"127.0.0.1:{port}", "--timeout", "3",
            "-o", str(tmp_path / "r.json"), timeout=60,
        )  # fmt: skip
    assert "no Ray cluster let this driver join within 3 s" in one_line_error(r)
