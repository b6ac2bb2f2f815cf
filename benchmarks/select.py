"""Benchmark scar.select.top_k against np.argpartition on uniform float32 scores.

Run: ``.venv/bin/python benchmarks/select.py [--sizes 1000000 1e7 5e7] [--repeat 3]``.
For each n (width-1 float32 scores, uniform in [0, 1) from a seeded RNG) and k = n // 8, it
times (best of ``--repeat``, after a warm-up call so numba compilation is not counted):

* ``top_k(scores, k)`` (exact, ids sorted ascending);
* ``np.argpartition(-scores, k - 1)[:k]`` (unordered, arbitrary among boundary ties);
* one memory pass, ``scores.sum()``, as a floor.

Both selections are checked: ours must be exactly the first k rows of a stable sort by
(-score, row id); argpartition must pick the same rows except, at most, which of the rows tied
at the boundary value it takes (float32 uniform draws are multiples of 2**-24, so large n has
such ties).  Any failed check exits non-zero.  A table is printed, and the last line is a JSON
object: ratio = argpartition time / our time at the largest n.
"""

from __future__ import annotations

import os
import sys

# This file is named select.py: drop its directory from the path so that it does not shadow
# the standard-library ``select`` module (imported by subprocess, socket, numba, ...).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from scar.select import top_k  # noqa: E402

DEFAULT_SIZES = [1_000_000, 10_000_000, 50_000_000]


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None  # free the previous result before the next run
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def check(scores: np.ndarray, k: int, ours: np.ndarray, theirs: np.ndarray) -> tuple[str, int]:
    """Validate both selections; return (problem or "", number of rows tied at the boundary)."""
    n = scores.size
    kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
    above = scores > kth
    tied = np.flatnonzero(scores == kth)
    expected = above.copy()
    expected[tied[: k - np.count_nonzero(above)]] = True  # exact rule: lowest tied row ids
    if not np.array_equal(ours, np.flatnonzero(expected)):
        return "top_k differs from the stable (-score, row id) reference", tied.size
    picked = np.zeros(n, dtype=bool)
    picked[theirs] = True
    if not (
        theirs.size == k
        and np.count_nonzero(picked) == k
        and np.all(scores[theirs] >= kth)
        and np.count_nonzero(picked & above) == np.count_nonzero(above)
    ):
        return "argpartition picked a different set of rows", tied.size
    return "", tied.size


def parse_size(text: str) -> int:
    return int(float(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=DEFAULT_SIZES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    warm = np.random.default_rng(1).random(200_000, dtype=np.float32)
    top_k(warm, 25_000)  # compile (or load from cache) before timing anything
    print(
        f"top_k vs np.argpartition, float32 uniform [0,1), k = n/8, best of {args.repeat}; "
        f"numba threads {numba.get_num_threads()} ({numba.threading_layer()}), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    header = f"{'n':>12} {'top_k s':>9} {'argpart s':>10} {'ratio':>7} {'mem pass s':>11}  check"
    print(header)
    print("-" * len(header))
    rows, failed = [], False
    for n in args.sizes:
        k = n // 8
        scores = np.random.default_rng(args.seed).random(n, dtype=np.float32)
        top_k(scores, k)  # warm-up at this size (page faults, thread pool)
        ours_s, ours = best_of(args.repeat, lambda s=scores, k=k: top_k(s, k))
        ap_s, theirs = best_of(
            args.repeat, lambda s=scores, k=k: np.argpartition(-s, k - 1)[:k].copy()
        )
        mem_s, _ = best_of(args.repeat, scores.sum)
        problem, ties = check(scores, k, ours, theirs)
        identical = not problem and np.array_equal(ours, np.sort(theirs))
        note = problem or ("same rows" if identical else f"same rows up to {ties} boundary ties")
        failed |= bool(problem)
        ratio = ap_s / ours_s
        print(f"{n:>12,} {ours_s:>9.4f} {ap_s:>10.4f} {ratio:>7.1f} {mem_s:>11.4f}  {note}")
        rows.append(
            {"n": n, "ours_s": ours_s, "argpartition_s": ap_s, "ratio": ratio, "mem": mem_s}
        )
        del scores, ours, theirs

    last = max(rows, key=lambda row: row["n"])
    sizes = [{key: row[key] for key in ("n", "ours_s", "argpartition_s", "ratio")} for row in rows]
    if failed:
        print("FAILED: a selection check did not pass (see the table)", file=sys.stderr)
    summary = {
        "benchmark": "select",
        "ratio": last["ratio"],
        "n": last["n"],
        "ours_s": last["ours_s"],
        "argpartition_s": last["argpartition_s"],
        "memory_pass_s": last["mem"],
        "sizes": sizes,
    }
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
