"""A shard's work at each priority save before the store sees it: choose the rows (the ``k``
largest changes among the rows touched since their last save) and snapshot them (gather their
values, record them as saved). This release's path vs the one it replaced, same inputs, same
outputs (checked):

* ``fused``: ``take_top_changed`` (one compiled pass over the dirty mask that scores
  one-column rows and keeps the changed ones; wider tables are gathered) and
  ``gather_saving`` (values and saved copy in one pass);
* ``gathered``: ``take_set`` (the mask's ids), ``select_top_changed_among`` (the rows'
  live and saved values gathered, their norms, the choice), then numpy's ``live[ids]`` and
  ``saved[ids] = values``.

    .venv/bin/python benchmarks/shard_select.py [--rows 262144] [--touched 19500]
        [--fraction 0.125] [--width 1 16] [--calls 200] [--rounds 5]

Each call starts from the same state: a table of ``--rows`` rows whose saved copy differs
from the live one on ``--touched`` random rows (about what two sparse-LR iterations touch on
one of 4 shards), all of them set in the mask; ``k = fraction * rows``. Only the selection
and snapshot are timed (one core, as a shard runs them). The rounds alternate the order;
the last line is one JSON object with each width's median times and ``gathered / fused``.

When more rows changed than the save takes (``--choice-touched``, default 40000 > k: denser
updates than sparse LR's), the choice among them is a radix selection compiled in one
kernel (``choice``: digits of the scores' bits, one pass to emit the chosen and the rows
left); it is timed against the numpy choice it replaced (``np.partition`` around the k-th
score, then masks: ``choice_numpy``), on the same scores, outputs checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import numpy as np  # noqa: E402

from scar.select import (  # noqa: E402
    gather_saving,
    select_top_changed_among,
    single_threaded,
    take_set,
    take_top_changed,
    top_k,
)
from scar.select.changed import _choose_top  # noqa: E402


def fused(mask, live, saved, k):
    chosen, still = take_top_changed(mask, live, saved, k)
    return chosen, still, gather_saving(live, chosen, saved)


def gathered(mask, live, saved, k):
    chosen, still = select_top_changed_among(live, saved, k, take_set(mask))
    values = live[chosen]
    saved[chosen] = values
    return chosen, still, values


WAYS = {"fused": fused, "gathered": gathered}


def copy_back(pairs) -> None:
    for dst, src in pairs:
        np.copyto(dst, src)


def medians(ways: dict, a, reset=lambda: None) -> dict[str, float]:
    """Each way's median seconds per call: ``--rounds`` rounds (the order of the two ways
    alternating) of ``--calls`` calls each, ``reset`` run untimed before every call; the
    median over rounds of each round's median."""
    times: dict[str, list[float]] = {n: [] for n in ways}
    for r in range(a.rounds):
        for name in list(ways)[r % 2 :] + list(ways)[: r % 2]:
            each = []
            for _ in range(a.calls):
                reset()
                t0 = time.perf_counter()
                ways[name]()
                each.append(time.perf_counter() - t0)
            times[name].append(statistics.median(each))
    return {n: statistics.median(t) for n, t in times.items()}


def choice_numpy(ids, scores, k):
    """The choice ``_choose`` made before its kernel: top_k's positions (np.partition below
    65536 scores), then the rows left and the NaN ones by boolean masks."""
    pos = top_k(scores, k)
    left = np.ones(ids.size, bool)
    left[pos] = False
    return ids[pos], ids[left | np.isnan(scores)]


def choice_row(a, k: int, rng) -> dict:
    """The choice among ``--choice-touched`` changed rows: the kernel vs numpy's."""
    ids = np.sort(rng.choice(a.rows, a.choice_touched, replace=False)).astype(np.int64)
    scores = np.abs(rng.standard_normal(ids.size)).astype(np.float32)
    take = min(k, ids.size)
    ways = {"choice": lambda: _choose_top(ids, scores, take),
            "choice_numpy": lambda: choice_numpy(ids, scores, take)}  # fmt: skip
    got = {n: w() for n, w in ways.items()}  # compiled (or loaded from numba's cache)
    for x, y in zip(got["choice"], got["choice_numpy"], strict=True):
        if not np.array_equal(x, y):
            sys.exit("the two choices differ")
    med = medians(ways, a)
    return {
        "changed": int(ids.size),
        "k": take,
        "choice_ms": round(1000 * med["choice"], 4),
        "choice_numpy_ms": round(1000 * med["choice_numpy"], 4),
        "ratio": round(med["choice_numpy"] / med["choice"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--touched", type=int, default=19500)
    ap.add_argument("--fraction", type=float, default=0.125)
    ap.add_argument("--width", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--choice-touched", type=int, default=40000)
    a = ap.parse_args()
    if min(a.rows, a.calls, a.rounds, *a.width) < 1 or not 0 < a.touched <= a.rows:
        ap.error("need --rows, --calls, --rounds, --width >= 1 and 0 < --touched <= --rows")
    if not 0 < a.choice_touched <= a.rows:
        ap.error("--choice-touched must be in 1..--rows")
    if not 0 < a.fraction <= 1:
        ap.error("--fraction must be in (0, 1]")
    k = max(1, round(a.fraction * a.rows))
    rng = np.random.default_rng(0)
    results = []
    for width in a.width:
        live = rng.standard_normal((a.rows, width)).astype(np.float32)
        base = live.copy()
        touched = np.sort(rng.choice(a.rows, a.touched, replace=False))
        base[touched] += rng.standard_normal((a.touched, width)).astype(np.float32)
        dirty = np.zeros(a.rows, bool)
        dirty[touched] = True
        saved, mask = base.copy(), dirty.copy()
        reset = partial(copy_back, ((saved, base), (mask, dirty)))  # each call's start
        ways = {n: partial(way, mask, live, saved, k) for n, way in WAYS.items()}
        out = {}
        for name, way in ways.items():  # compiled (or loaded from numba's cache); outputs
            reset()
            out[name] = [*way(), saved.copy()]
        for x, y in zip(out["fused"], out["gathered"], strict=True):
            if not np.array_equal(x, y):
                sys.exit(f"the two paths differ at width {width}")
        with single_threaded():
            med = medians(ways, a, reset)
        row = {
            "width": width,
            "fused_ms": round(1000 * med["fused"], 4),
            "gathered_ms": round(1000 * med["gathered"], 4),
            "ratio": round(med["gathered"] / med["fused"], 2),
        }
        print(row, flush=True)
        results.append(row)
    choice = choice_row(a, k, rng)
    print(choice, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "shard_select",
                "rows": a.rows,
                "touched": a.touched,
                "k": k,
                "results": results,
                "choice": choice,
            }
        )
    )


if __name__ == "__main__":
    main()
