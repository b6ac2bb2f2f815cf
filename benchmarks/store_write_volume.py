"""Bytes a priority-checkpointing run writes to its stores, against the bytes of the rows it
checkpoints: the store's write amplification (row ids, per-row ages, manifests, compaction).

    .venv/bin/python benchmarks/store_write_volume.py [--shards 4] [--iterations 320]

Sparse LR on criteo-synth (2^20 rows: ``ray_overhead.py``'s problem, the same flags) on the
local runtime, priority(1/8) every 2nd iteration (``--period 16``), synchronous writes so that
every byte is on disk when an iteration ends. After 32 warm-up iterations it counts, over
``--iterations``: the bytes the process wrote to storage (Linux ``/proc/self/io``
``write_bytes``: every segment, manifest and merged segment) and the value bytes of the rows
the checkpoints saved.
The last line is one JSON object; ``amplification`` = written / value bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from scar.runtime import Trainer, build_split  # noqa: E402
from scar.runtime.local import LocalCluster  # noqa: E402

spec = importlib.util.spec_from_file_location("ray_overhead", os.path.join(HERE, "ray_overhead.py"))
ro = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ro)


def written() -> int:
    with open("/proc/self/io") as f:
        return int(re.search(r"write_bytes: (\d+)", f.read()).group(1))


def value_bytes(t: Trainer) -> int:
    return sum(h.actor.ckpt.value_bytes for h in t.shards)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=320)
    ro.add_problem_args(ap)
    a = ap.parse_args()
    a.save_priority = "idle"
    if a.shards < 1 or a.iterations < 1 or a.period < 1:
        ap.error("need --shards, --iterations and --period >= 1")
    if not os.path.exists("/proc/self/io"):
        sys.exit("needs Linux's /proc/self/io")
    work = tempfile.mkdtemp(prefix="scar-write-volume-")
    try:
        cfg = ro.config("priority", a.shards, a, f"{work}/s")  # in this process, in sync
        cfg = dataclasses.replace(cfg, runtime="local", async_writes=False).validate()
        t = Trainer(cfg, build_split(cfg), LocalCluster(), cfg.store)
        for _ in range(32):
            t.step()
        w0, v0 = written(), value_bytes(t)
        for _ in range(a.iterations):
            t.step()
        w, v = written() - w0, value_bytes(t) - v0
        t.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "store_write_volume",
                "shards": a.shards,
                "iterations": a.iterations,
                "written_mb_per_it": round(w / a.iterations / 1e6, 3),
                "value_mb_per_it": round(v / a.iterations / 1e6, 3),
                "amplification": round(w / v, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
