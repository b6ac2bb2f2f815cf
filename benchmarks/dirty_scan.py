"""A shard's dirty-row scan: ``scar.select.take_set`` vs ``np.flatnonzero`` + clearing.

Before each priority save a shard turns its dirty-row mask (one bool per row, set by every
update) into row ids and clears it. ``take_set`` does both in one compiled pass that skips the
zero 8-byte words; the baseline is what it replaced, ``rows = np.flatnonzero(mask)`` then
``mask[rows] = False``. Both are checked to give the same ids and an all-False mask.

    .venv/bin/python benchmarks/dirty_scan.py [--rows 262144] [--density 0.01 0.07 0.5]

Best of ``--repeat`` runs of ``--calls`` scans (the mask refilled before each, the refill
timed alone and subtracted). The last line is one JSON object: baseline time / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import numpy as np  # noqa: E402

from scar.select import take_set  # noqa: E402


def baseline(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask)
    mask[rows] = False
    return rows


def per_call(fn, mask: np.ndarray, full: np.ndarray, calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            np.copyto(mask, full)
            fn(mask)
        best = min(best, time.perf_counter() - t0)
    return best / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--density", type=float, nargs="+", default=[0.01, 0.07, 0.5])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    if a.rows < 1 or a.calls < 1 or a.repeat < 1 or not all(0 <= d <= 1 for d in a.density):
        ap.error("need --rows, --calls, --repeat >= 1 and densities in [0, 1]")
    rng = np.random.default_rng(0)
    take_set(np.zeros(9, bool))  # compiled (or loaded from numba's cache) before timing
    rows = []
    for d in a.density:
        full = rng.random(a.rows) < d
        mask = full.copy()
        ours, theirs = take_set(mask), baseline(full.copy())
        if not np.array_equal(ours, theirs) or mask.any():
            sys.exit(f"take_set differs from flatnonzero at density {d}")
        refill = per_call(lambda m: None, mask, full, a.calls, a.repeat)
        t_ours = per_call(take_set, mask, full, a.calls, a.repeat) - refill
        t_base = per_call(baseline, mask, full, a.calls, a.repeat) - refill
        row = {
            "density": d,
            "take_set_ms": round(1000 * t_ours, 4),
            "flatnonzero_and_clear_ms": round(1000 * t_base, 4),
            "ratio": round(t_base / t_ours, 1),
        }
        print(row, flush=True)
        rows.append(row)
    print(json.dumps({"benchmark": "dirty_scan", "rows": a.rows, "results": rows}))


if __name__ == "__main__":
    main()
