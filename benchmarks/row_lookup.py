# ruff: noqa: E402  (imports follow the sys.path fix below)
"""A worker's row lookup on the parameter server: ``Layout.locate`` (range sharding: a row's
position in its shard is the id minus the shard's first row) against ``np.searchsorted`` of the
same ids over each shard's rows (the lookup before), same ids, same run; positions checked.

    .venv/bin/python benchmarks/row_lookup.py [--rows 10000000] [--shards 4] [--ids 13312]
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import argparse
import json
import time

import numpy as np

from scar.runtime.split import Layout


def best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--ids", type=int, default=13312, help="ids drawn (512 x 26 fields)")
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    layout = Layout({"emb": (a.rows, 16)}, a.shards)
    ids = np.unique(np.random.default_rng(0).integers(0, a.rows, a.ids))
    owner = layout.shardings["emb"].shard_of(ids)

    def searched():
        return [np.searchsorted(layout.rows(k)["emb"], ids[owner == k]) for k in range(a.shards)]

    def located():
        return [p["emb"] for p in layout.locate({"emb": ids})]

    for x, y in zip(searched(), located(), strict=True):
        assert np.array_equal(x, y)
    base, ours = best(searched, a.repeat), best(located, a.repeat)
    print(f"{len(ids)} ids over {a.shards} shards of {a.rows} rows (best of {a.repeat})")
    print(f"  np.searchsorted per shard: {base * 1e3:8.3f} ms")
    print(f"  Layout.locate:             {ours * 1e3:8.3f} ms")
    print(f"  ratio:                     {base / ours:8.1f}x")
    print(json.dumps({
        "benchmark": "row_lookup", "rows": a.rows, "shards": a.shards, "ids": int(len(ids)),
        "searchsorted_ms": round(base * 1e3, 4), "locate_ms": round(ours * 1e3, 4),
        "ratio": round(base / ours, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
