"""Per-version cost of the live set's loss counts (which live segments lose how many rows to a
new segment) as the oldest live segment ages: a sparse model's base checkpoint keeps most of
its rows, so it stays live while 10^5-10^6 versions follow.

    .venv/bin/python benchmarks/live_set_losses.py [--rows 262144] [--saved 32768] [--repeat 50]

For a shard table of ``--rows`` rows with a dense base segment still live and ``span`` uids
registered since, one sparse save of ``--saved`` random rows is counted by:

* ``tally`` (the store): ``LiveSet.losses``, a compiled pass over the saved rows into a
  persistent tally whose touched places are read and reset: cost in the saved rows only;
* ``span_array``: the earlier design, a zeroed array over the live uids' span, the same
  compiled count, then a scan of the array for the nonzero counts;
* ``unique``: sorting the saved rows' owners (``np.unique``), what the store falls back to
  past 2^20 live uids.

Prints microseconds per count and, last, one JSON line with ``span_array / tally`` and
``unique / tally`` at each span.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import numpy as np  # noqa: E402

from scar.store import _kernels, index  # noqa: E402
from scar.store.format import Segment, Table  # noqa: E402

SPANS = (100, 10_000, 100_000, 1_000_000)


def segment(rows: int, dense: bool = False) -> Segment:
    return Segment("p", 0, 0, 0, 0, rows, dense, False, "raw", 0, "", 0, "")


def timed(f, repeat: int) -> float:
    f()
    t0 = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - t0) / repeat * 1e6


def measure(span: int, ids: np.ndarray, a) -> dict[str, float]:
    """Microseconds per count of each way, ``span`` uids after a base segment still live."""
    live = index.LiveSet((Table("w", a.rows, 1, "float32", (0, a.rows)),))
    live.apply([(segment(a.rows, dense=True), None, None)])
    live._uid = span  # as after `span` versions, the base still live
    updates = [(segment(ids.size), ids, None)]
    owner = live.owner[0]

    def span_array() -> dict:
        counts = np.zeros(span, np.int64)
        unused = np.zeros(span, np.int64)  # (the earlier kernel kept no touched list)
        _kernels.count_owners(owner, False, ids, 0, 0, 0, counts, unused, 0)
        uids = np.flatnonzero(counts)
        return dict(zip(uids.tolist(), counts[uids].tolist(), strict=True))

    def unique() -> dict:
        old = owner[ids]
        uids, counts = np.unique(old[old >= 0], return_counts=True)
        return dict(zip(uids.tolist(), counts.tolist(), strict=True))

    assert live.losses(updates) == span_array() == unique()
    return {
        "tally": timed(lambda: live.losses(updates), a.repeat),
        "span_array": timed(span_array, a.repeat),
        "unique": timed(unique, a.repeat),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--saved", type=int, default=32768)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    if not 1 <= a.saved <= a.rows or a.repeat < 1:
        ap.error("need 1 <= --saved <= --rows and --repeat >= 1")
    index.load_kernels()
    ids = np.sort(np.random.default_rng(0).choice(a.rows, a.saved, replace=False))
    out = {}
    for span in SPANS:
        t = measure(span, ids, a)
        print(f"span {span:>9}: " + ", ".join(f"{k} {v:.1f} us" for k, v in t.items()))
        out[str(span)] = {
            "us": {k: round(v, 1) for k, v in t.items()},
            "span_array_over_tally": round(t["span_array"] / t["tally"], 2),
            "unique_over_tally": round(t["unique"] / t["tally"], 2),
        }
    print(json.dumps({"benchmark": "live_set_losses", "saved": a.saved, "spans": out}))


if __name__ == "__main__":
    main()
