# ruff: noqa: E402  (imports follow the sys.path fix below)
"""The full run's added trials (``adapt_trials``) in one process against ``--jobs`` worker
processes, on the same headline cells, in the same run: wall time of each and their ratio.

The cells come from the quick plan (``--trials`` each, run once and copied); the adaptation is
then forced to add ``--more`` trials to every headline pair (interval width target 0), so both
ways do the same work. The trials agree (tests/test_adapt.py checks it).

    .venv/bin/python benchmarks/adapt_jobs.py [--models mlr mf lda cnn dlrm] [--trials 3]
        [--more 6] [--jobs 2]
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from scar.experiments.adapt import adapt_trials, headline_pairs
from scar.experiments.suite import plan, run_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mlr", "mf", "lda", "cnn", "dlrm"])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--more", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    tasks = [t for t in plan(a.models, quick=True, trials=a.trials) if t.experiment == "headline"]
    cap = a.trials + a.more
    with tempfile.TemporaryDirectory(prefix="scar-adapt-") as tmp:
        cells = Path(tmp) / "cells"
        t0 = time.perf_counter()
        run_suite(tasks, cells, jobs=a.jobs)
        cells_s = time.perf_counter() - t0
        wall = {}
        for jobs in (1, a.jobs):
            out = Path(tmp) / f"jobs{jobs}"
            shutil.copytree(cells, out)
            t0 = time.perf_counter()
            adapt_trials(tasks, out, width=0.0, cap=cap, step=a.more, jobs=jobs)
            wall[jobs] = time.perf_counter() - t0
            n = {
                len(json.loads((out / "results" / f"{t.id}.json").read_text())["trials"])
                for t in tasks
            }
            assert n == {cap}, n
    pairs = len(headline_pairs(tasks))
    print(f"{pairs} headline pairs (and their rebuild cells), {a.more} trials added to each cell")
    print(f"  cells first:         {cells_s:7.1f} s  (--jobs {a.jobs})")
    print(f"  one process:         {wall[1]:7.1f} s")
    print(f"  {a.jobs} worker processes: {wall[a.jobs]:7.1f} s")
    print(f"  speed-up:            {wall[1] / wall[a.jobs]:7.2f}x")
    print(json.dumps({
        "pairs": pairs, "trials_added": a.more, "jobs": a.jobs,
        "one_process_s": round(wall[1], 2), "workers_s": round(wall[a.jobs], 2),
        "speedup": round(wall[1] / wall[a.jobs], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
