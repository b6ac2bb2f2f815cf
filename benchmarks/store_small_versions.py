"""CPU per version of small sparse checkpoints (what a priority policy writes, every few
iterations) vs raw writes of the same files with the same fsyncs.

    .venv/bin/python benchmarks/store_small_versions.py [--rows 262144] [--fraction 0.125]
        [--versions 160] [--rounds 3] [--dir .]

A table of ``--rows`` float32 rows (one shard of the sparse LR benchmark); each version saves a
random ``--fraction`` of its rows (synchronous writes, fsync on, ``keep_last`` 3, compaction
every 16 versions: the store's defaults). Measured per version, as CPU time of the process
(the kernel's work for the writes and fsyncs included):

* ``store``: the store (checksums, bitmap coding of row ids, the live-set index, the
  manifest, compaction, retention), its compiled loops loaded up front as a shard server
  loads them; ``store_no_compaction`` and ``store_no_fsync`` the same
  without compaction or without fsyncs, to tell what those two cost; ``store_no_recycle``
  deletes retired files instead of writing new versions over them (``LocalBackend.recycle``:
  the blocks freed, discarded by a disk mounted with ``discard``, and allocated again, each
  version); ``store_large_mode``
  flushes every version as the store flushes one of 4 MB or more (the fsyncs concurrent, on
  helper threads, and files reopened for them), to show what flushing a small version's
  files one after another, on descriptors kept open since their write, saves;
  ``store_group_commit`` flushes only every ``GROUP``-th version, with one ``syncfs`` of
  the whole file system (Linux), instead of each version's files and folders: the ceiling
  of a group commit, which the store does not do (a machine crash could then lose up to
  ``GROUP`` - 1 committed versions);
* ``raw``: the floor - the same two files per version (the segment's bytes and a 4 KB
  manifest) written to new names with plain ``write``, the segment and the temporary manifest
  fsynced, the manifest renamed into place and its directory fsynced, and the files of the
  version three back deleted. No checksums, index, compaction or bitmap coding.

Besides the process's CPU, the machine's (``machine_ms_per_version``, from /proc/stat: the
kernel's threads too, which write back, complete I/O and discard freed blocks; read as
``ray_overhead.py`` reads it) - where reusing files shows most. The rounds rotate the order;
medians. Prints one line per round and, last, one JSON object with ``store / raw``, the
store's CPU over the floor's, ``no_recycle_over_store``, the machine's CPU per version
without writing new versions over retired files, and ``group_commit_over_store``, with a
flush every ``GROUP`` versions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402  (imports subprocess, hence select)
import importlib.util  # noqa: E402

import numpy as np  # noqa: E402

from scar.store import DurableStore, TableSpec  # noqa: E402
from scar.store.backends import fsync_path, local  # noqa: E402  (fsync_path: open, fsync, close)
from scar.store.index import load_kernels  # noqa: E402

# the machine's CPU counters as ray_overhead.py reads them (cpu_ticks, Clock)
HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "ray_overhead", os.path.join(HERE, "ray_overhead.py")
)
ro = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ro)


def saves(rows: int, fraction: float, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = max(1, int(rows * fraction))
    out = []
    for _ in range(n):
        ids = np.sort(rng.choice(rows, k, replace=False)).astype(np.int64)
        out.append((ids, rng.standard_normal((k, 1)).astype(np.float32)))
    return out


GROUP = 8  # store_group_commit: versions per flush


def _syncfs():
    """Linux ``syncfs`` (flushes the whole file system that holds a descriptor), or None."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


SYNCFS = _syncfs()


def run_store(root: str, rows: int, versions, variant: str = "store") -> dict[str, float]:
    """Seconds per version of the store (``ro.Clock``: wall, process and machine CPU; after a
    base save and 16 warm-up versions), as shipped or as one of the variants (no compaction,
    no fsync, no reuse of retired files, every version flushed as a large one, a group
    commit)."""
    opts = {
        "fsync": variant not in ("store_no_fsync", "store_group_commit"),
        "recycle": variant != "store_no_recycle",
        "flush_every": GROUP if variant == "store_group_commit" else 0,
    }
    if variant == "store_no_compaction":
        opts["compact_after"] = 10**9
    large_batch = local.LARGE_BATCH
    if variant == "store_large_mode":
        local.LARGE_BATCH = 0
    try:
        return _timed_saves(os.path.join(root, "s"), rows, versions, opts)
    finally:
        local.LARGE_BATCH = large_batch


def _timed_saves(url: str, rows: int, versions, opts: dict) -> dict[str, float]:
    load_kernels()  # as a shard server does before it serves: no save pays for loading them
    recycle, every = opts.pop("recycle"), opts.pop("flush_every")
    with DurableStore(url, **opts) as s:
        if not recycle:
            s.backend.recycle = s.backend.delete
        s.open([TableSpec("w", rows, 1, "float32")])
        s.save(0, {"w": (None, np.zeros((rows, 1), np.float32))})
        warm, timed = versions[:16], versions[16:]
        for i, (ids, vals) in enumerate(warm):
            s.save(i + 1, {"w": (ids, vals)})
        fd = os.open(url, os.O_RDONLY) if every else None
        try:
            clock = ro.Clock()
            clock.start()
            for i, (ids, vals) in enumerate(timed):
                s.save(i + 17, {"w": (ids, vals)})
                if fd is not None and (i + 1) % every == 0 and SYNCFS(fd) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs failed")
            return clock.per(len(timed))
        finally:
            if fd is not None:
                os.close(fd)


def run_raw(root: str, versions) -> dict[str, float]:
    data, man = os.path.join(root, "data"), os.path.join(root, "manifests")
    os.makedirs(data)
    os.makedirs(man)
    manifest = b"x" * 4096

    def write(path: str, b) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            mv = memoryview(b).cast("B")
            while len(mv):
                mv = mv[os.write(fd, mv) :]
        finally:
            os.close(fd)

    def one(v: int, ids: np.ndarray, vals: np.ndarray) -> None:
        seg, tmp = f"{data}/v{v}.seg", f"{man}/.v{v}.tmp"
        write(seg, np.concatenate([ids.view(np.uint8), vals.view(np.uint8).ravel()]))
        write(tmp, manifest)
        for p in (seg, data, tmp):
            fsync_path(p)
        os.replace(tmp, f"{man}/v{v}.json")
        fsync_path(man)
        if v >= 3:
            os.unlink(f"{data}/v{v - 3}.seg")
            os.unlink(f"{man}/v{v - 3}.json")

    for v, (ids, vals) in enumerate(versions[:16]):
        one(v, ids, vals)
    clock = ro.Clock()
    clock.start()
    for v, (ids, vals) in enumerate(versions[16:], start=16):
        one(v, ids, vals)
    return clock.per(len(versions) - 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--fraction", type=float, default=0.125)
    ap.add_argument("--versions", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=".")
    a = ap.parse_args()
    if a.versions <= 16 or not 0 < a.fraction <= 1 or a.rows < 1 or a.rounds < 1:
        ap.error("need --versions > 16, 0 < --fraction <= 1, --rows >= 1, --rounds >= 1")
    versions = saves(a.rows, a.fraction, a.versions)
    names = (
        "store", "raw", "store_no_compaction", "store_no_fsync", "store_no_recycle",
        "store_large_mode",
    ) + (("store_group_commit",) if SYNCFS is not None else ())  # fmt: skip
    res: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(a.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            root = tempfile.mkdtemp(prefix="scar-small-", dir=a.dir)
            try:
                if name == "raw":
                    res[name].append(run_raw(root, versions))
                else:
                    res[name].append(run_store(root, a.rows, versions, name))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        print({k: {m: round(1000 * x, 3) for m, x in v[-1].items()} for k, v in res.items()}, flush=True)  # fmt: skip
    med = {k: statistics.median(r["process"] for r in v) for k, v in res.items()}
    machine = {
        k: statistics.median(r["machine"] for r in v) for k, v in res.items() if "machine" in v[0]
    }
    out = {
        "benchmark": "store_small_versions",
        "rows": a.rows,
        "rows_per_version": int(a.rows * a.fraction),
        "cpu_ms_per_version": {k: round(1000 * v, 3) for k, v in med.items()},
        "machine_ms_per_version": {k: round(1000 * v, 3) for k, v in machine.items()},
        "store_over_raw": round(med["store"] / med["raw"], 2),
        "large_mode_over_store": round(med["store_large_mode"] / med["store"], 2),
    }
    if machine:
        out["no_recycle_over_store"] = round(machine["store_no_recycle"] / machine["store"], 2)
        if "store_group_commit" in machine:
            out["group_commit_over_store"] = round(
                machine["store_group_commit"] / machine["store"], 2
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
