"""Durable full checkpoint vs a raw write + fsync of the same bytes to the same disk.

    .venv/bin/python benchmarks/store_write.py [--size-mb 1024] [--rounds 3] [--dir .]

Each round (the two alternate, page cache flushed with sync before each): the baseline writes
the table's bytes to one file in 64 MB writes and fsyncs it; the store saves the same table as a
complete checkpoint (synchronous: segments written and fsynced, checksummed, manifest committed,
directories fsynced). The ratio is the store's median throughput over the baseline's; target
>= 0.8. Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import numpy as np  # noqa: E402

from scar.store import DurableStore, TableSpec  # noqa: E402

WIDTH = 256  # float32 columns: 1 KB rows


def raw_write(path: str, data: np.ndarray) -> float:
    mv = memoryview(data.reshape(-1)).cast("B")
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in range(0, len(mv), 64 << 20):
        view = mv[off : off + (64 << 20)]
        while len(view):
            view = view[os.write(fd, view) :]
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t


def store_write(path: str, data: np.ndarray) -> float:
    store = DurableStore(path)
    store.open([TableSpec("w", data.shape[0], data.shape[1])])
    t = time.perf_counter()
    store.save(0, {"w": (None, data)})
    dt = time.perf_counter() - t
    store.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=".", help="where to write (the disk under test)")
    a = ap.parse_args()
    rows = a.size_mb * (1 << 20) // (4 * WIDTH)
    data = np.random.default_rng(0).standard_normal((rows, WIDTH), dtype=np.float32)
    nbytes = data.nbytes
    work = tempfile.mkdtemp(prefix="scar-bench-", dir=a.dir)
    raw, ours = [], []
    try:
        for r in range(a.rounds):
            for name, fn, out in (("raw", raw_write, raw), ("store", store_write, ours)):
                target = os.path.join(work, f"{name}-{r}")
                os.sync()
                out.append(fn(target, data))
                (os.unlink if name == "raw" else shutil.rmtree)(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"durable full checkpoint of {nbytes / 1e9:.2f} GB ({rows} rows x {WIDTH} float32)")
    print(f"{'round':>5} {'raw write+fsync GB/s':>21} {'store save GB/s':>16}")
    for r in range(a.rounds):
        print(f"{r:>5} {nbytes / raw[r] / 1e9:>21.3f} {nbytes / ours[r] / 1e9:>16.3f}")
    raw_gbps = nbytes / statistics.median(raw) / 1e9
    store_gbps = nbytes / statistics.median(ours) / 1e9
    ratio = store_gbps / raw_gbps
    print(
        f"{'median':>5} {raw_gbps:>21.3f} {store_gbps:>16.3f}   ratio {ratio:.2f} (target >= 0.8)"
    )
    print(
        json.dumps(
            {
                "benchmark": "store_write",
                "bytes": nbytes,
                "raw_gbps": round(raw_gbps, 4),
                "store_gbps": round(store_gbps, 4),
                "ratio": round(ratio, 3),
                "target": 0.8,
                "met": ratio >= 0.8,
            }
        )
    )


if __name__ == "__main__":
    main()
