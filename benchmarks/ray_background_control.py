# ruff: noqa: E402  (imports follow the sys.path fix below)
"""A control for ray_overhead.py: what background work costs the iterations of the sparse LR
run on this machine when that work is as harmless as it can be - at idle CPU priority, holding
no lock the serving thread needs (numpy releases the GIL), never on the critical path - and
what it costs when it holds the GIL, or runs in a process of its own.

The shards checkpoint nothing here. Instead, at the iterations a priority(1/8) shard saves
(every 2nd at ``--period 16``), each shard's save thread burns ``--burn-ms`` of CPU time, in
one of these ways (``--kinds`` picks; default: all):

* ``cache``: sorting a 20000-element array over and over (stays in the core's caches);
* ``memory``: adding 1 to a 16 MB array over and over (streams through memory, as a
  checkpoint's gathers, copies and index updates do);
* ``python``: pure Python arithmetic (in cache, but holding the GIL, as the store writer's
  bookkeeping does: a request the shard serves meanwhile waits for the GIL);
* ``python_short``: the same, letting the GIL go every ~20 us (as the store's Python does at
  each file operation and compiled loop);
* ``python_normal``: the same as ``python``, the save thread at normal CPU priority while it
  burns: tests whether Python costs more because an idle-priority thread holding the GIL is
  preempted and starved (the serving thread then waits for a free core); if so, this one
  would cost less (two runs: it did not, 6.0 and 5.0 % against 1.4 and 6.4 %);
* ``python_process``: the same Python, in a helper process of each shard's own at idle
  priority (the shard's save thread waits for it, not holding the GIL): what the GIL costs is
  the difference to ``python``.

The overhead of each over the same run with the burns paused is measured as ray_overhead.py
measures a checkpoint's (blocks with the saves on and paused on the same processes, ratio of
total times, bootstrap 95 % interval). With ``--burn-ms`` set to
the CPU that ray_overhead.py reports per priority save (save thread + store writer, per shard),
the result is the overhead the checkpoint would have if it were ideal background work.

    .venv/bin/python benchmarks/ray_background_control.py [--shards 4] [--burn-ms 4]
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import argparse
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time

import numpy as np

from scar.runtime import Trainer, build_split, coordinator
from scar.runtime.nodes import ShardServer
from scar.runtime.ray_ps import RayCluster

spec = importlib.util.spec_from_file_location("ray_overhead", os.path.join(HERE, "ray_overhead.py"))
ro = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ro)

KINDS = ("cache", "memory", "python", "python_short", "python_normal", "python_process")


# The python_process burn: the same Python loop in a process of the shard's own, at idle
# priority, one burn per line read (milliseconds), its CPU seconds written back.
HELPER = """
import os, sys, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
for line in sys.stdin:
    c0 = time.thread_time()
    end = c0 + float(line) / 1000
    while time.thread_time() < end:
        x = 0
        for i in range(200):
            x += i * i
    sys.stdout.write(f"{time.thread_time() - c0}\\n")
    sys.stdout.flush()
"""


class BurningShard(ShardServer):
    """A shard whose saves (after the base one) burn CPU instead of checkpointing. Defined in
    this script, so Ray ships the class itself (with ``burn``) to the shard processes."""

    burn: tuple[str, float] = ("cache", 0.0)

    def _save(self, iteration: int, base: bool = False) -> int:
        if base:
            return super()._save(iteration, base)
        kind, ms = self.burn
        end = time.thread_time() + ms / 1000
        if kind == "cache":
            a = np.random.default_rng(iteration).standard_normal(20000)
            while time.thread_time() < end:
                np.sort(a)
        elif kind in ("python", "python_short", "python_normal"):
            if kind == "python_normal":  # this thread at normal priority while it burns
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            while time.thread_time() < end:
                x = 0
                for i in range(200):
                    x += i * i
                if kind == "python_short":
                    time.sleep(0)  # lets the GIL go every ~20 us, as a call into C that blocks
            if kind == "python_normal":
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif kind == "python_process":
            helper = getattr(self, "_helper", None)
            if helper is None:  # ends when the shard does: its stdin closes
                helper = self._helper = subprocess.Popen(
                    [sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
            helper.stdin.write(f"{ms}\n".encode())
            helper.stdin.flush()
            self._saver.cpu_seconds += float(helper.stdout.readline())  # the helper's CPU
        else:
            big = getattr(self, "_big", None)
            if big is None:
                big = self._big = np.zeros(4 << 20, np.float32)  # 16 MB
            while time.thread_time() < end:
                np.add(big, 1.0, out=big)
        return 0


def trainer(kind: str, a, split, cluster, store: str) -> Trainer:
    cfg = ro.config("priority", a.shards, a, store)
    coordinator.ShardServer = type(f"Burn_{kind}", (BurningShard,), {"burn": (kind, a.burn_ms)})
    try:
        return Trainer(cfg, split, cluster, cfg.store)
    finally:
        coordinator.ShardServer = ShardServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--burn-ms", type=float, default=4.0, help="CPU ms per save and shard")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ro.add_problem_args(ap)
    a = ap.parse_args()
    a.save_priority = "idle"
    if a.block % a.period or a.shards < 1 or a.burn_ms < 0 or a.rounds < 2:
        ap.error(
            "need --block a multiple of --period, --shards >= 1, --burn-ms >= 0, --rounds >= 2"
        )
    t0 = time.perf_counter()
    cluster = RayCluster()
    work = tempfile.mkdtemp(prefix="scar-ray-control-")
    trainers: dict[str, Trainer] = {}
    try:
        split = build_split(ro.config("none", 1, a, work))
        for kind in a.kinds:
            trainers[kind] = trainer(kind, a, split, cluster, f"{work}/{kind}")
        runs = ro.paired(trainers, a)
    finally:
        ro.discard(cluster, trainers)
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "ray_background_control", "shards": a.shards, "burn_ms": a.burn_ms}
    for kind in a.kinds:
        on, off = ro.on_off(runs[kind])
        out[f"overhead_pct_{kind}"], out[f"overhead_ci95_{kind}"] = ro.overhead(off, on)
        burned = np.median([b["save_thread_cpu"] for b in runs[kind][True]])
        out[f"burn_cpu_ms_per_it_{kind}"] = round(1000 * float(burned), 2)
        out[f"noise_pct_{kind}_paused"] = ro.spread_pct(off)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
