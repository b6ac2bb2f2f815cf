"""How long an async checkpoint blocks the training loop, vs a memcpy of the same bytes.

    .venv/bin/python benchmarks/async_stall.py [--size-mb 256] [--checkpoints 8]

The loop holds a float32 table. Each "iteration" changes it, then checkpoints it through a
durable store in async mode: ``save()`` snapshots the rows and returns while a background thread
writes (with fsync) and commits. The stall is the time ``save()`` takes. Between checkpoints the
loop trains long enough for the write to finish (``wait()``, outside the timed part), as a
checkpoint period would. Two kinds: a full checkpoint (every row) and a priority-style partial
one (1/8 of the rows, given as row ids and gathered values, as the Checkpointer does). The
baseline is ``np.copyto`` of the same bytes into a warm buffer. Target: median stall <= 1.5x the
memcpy. The first checkpoints (buffers not yet recycled: page faults) are shown, not counted.
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

WIDTH = 256
WARMUP = 2


def memcpy_time(src: np.ndarray, repeats: int) -> float:
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def stalls(path: str, live: np.ndarray, n: int, partial: bool) -> list[float]:
    rows = live.shape[0]
    rng = np.random.default_rng(0)
    out = []
    with DurableStore(path, async_writes=True) as store:
        store.open([TableSpec("w", rows, WIDTH)])
        for it in range(n):
            live[it % rows] += 1  # training changed the state
            if partial:
                ids = np.sort(rng.choice(rows, size=rows // 8, replace=False))
                chosen = {"w": (ids, live[ids])}  # the Checkpointer's gather, before save()
            else:
                chosen = {"w": (None, live)}
            t = time.perf_counter()
            store.save(it, chosen)
            out.append(time.perf_counter() - t)
            store.wait()  # the rest of the checkpoint period: the write finishes meanwhile
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--dir", default=".")
    a = ap.parse_args()
    rows = a.size_mb * (1 << 20) // (4 * WIDTH)
    live = np.random.default_rng(1).standard_normal((rows, WIDTH), dtype=np.float32)
    work = tempfile.mkdtemp(prefix="scar-bench-", dir=a.dir)
    result = {}
    try:
        print(f"async checkpoints of a {live.nbytes / 1e6:.0f} MB float32 table ({rows} x {WIDTH})")
        print(f"{'kind':>8} {'bytes':>12} {'memcpy ms':>10} {'stall ms (each)':>40} {'median':>8} {'ratio':>6}")  # fmt: skip
        for kind in ("full", "partial"):
            s = stalls(os.path.join(work, kind), live, a.checkpoints + WARMUP, kind == "partial")
            nbytes = live.nbytes if kind == "full" else (rows // 8) * (WIDTH * 4 + 8)
            src = live if kind == "full" else live[: rows // 8]
            base = memcpy_time(src, 5) * (nbytes / src.nbytes)
            med = statistics.median(s[WARMUP:])
            each = " ".join(f"{x * 1e3:.1f}" for x in s)
            print(f"{kind:>8} {nbytes:>12} {base * 1e3:>10.1f} {each:>40} {med * 1e3:>8.1f} {med / base:>6.2f}")  # fmt: skip
            result[kind] = {"bytes": nbytes, "memcpy_s": base, "stall_s": med, "ratio": med / base}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = result["full"]["ratio"]
    print(
        f"stall / memcpy: full {ratio:.2f}, partial {result['partial']['ratio']:.2f} (target <= 1.5)"
    )
    print(
        json.dumps(
            {
                "benchmark": "async_stall",
                "ratio": round(ratio, 3),
                "partial_ratio": round(result["partial"]["ratio"], 3),
                "bytes": result["full"]["bytes"],
                "memcpy_ms": round(result["full"]["memcpy_s"] * 1e3, 2),
                "stall_ms": round(result["full"]["stall_s"] * 1e3, 2),
                "target": 1.5,
                "met": max(ratio, result["partial"]["ratio"]) <= 1.5,
            }
        )
    )


if __name__ == "__main__":
    main()
