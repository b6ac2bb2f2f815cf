"""The DLRM on Ray through SIGKILLed shards: priority checkpoints + partial recovery against
full checkpoints + full recovery and a clean run, at the same number of executed steps.

    .venv/bin/python scripts/dlrm_kills.py            # ~220 iterations, 21 kills a run

Three runs of ``scar train --runtime ray --model dlrm --dataset criteo-synth`` with one seed:

* ``priority+partial``: checkpoint priority (r = 1/8, period C = 16), recovery partial, one
  shard SIGKILLed every ``--kill-every`` iterations;
* ``full+full``: checkpoint full (C = 16), recovery full, the same kills;
* ``clean``: no kills.

A partial recovery never repeats an iteration (``totals.steps`` = iterations); a full one rolls
every shard back to the newest complete checkpoint and does the iterations since again. So the
runs are compared after the same number of executed steps (the budget: ``--iterations``): the
clean and partial runs' final objective, and full+full's objective after that many steps,
read off its trajectory (evaluated every step for that, ``eval_every=1``; the other two every
``--eval-every`` iterations). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from scar.runtime import TrainConfig, train

PERIOD = 16
FRACTION = 1 / 8


def run(name: str, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    cfg = TrainConfig(
        runtime="ray",
        model="dlrm",
        dataset="criteo-synth",
        shards=args.shards,
        workers=args.workers,
        iterations=args.iterations,
        period=PERIOD,
        seed=args.seed,
        **kw,
    )
    t0 = time.perf_counter()
    doc = train(cfg)
    print(f"{name}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return doc


def at_steps(doc: dict[str, Any], steps: int) -> tuple[int, float]:
    """(iteration, objective) after ``steps`` executed steps of a run evaluated every step: its
    trajectory has one entry per step (the iteration it left the tables at), after the start."""
    its, objs = doc["iterations"], doc["objective"]
    if doc["config"]["eval_every"] != 1 or len(its) != doc["totals"]["steps"] + 1:
        raise SystemExit("at_steps needs a run evaluated at every step")
    return its[steps], objs[steps]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=220, help="the step budget [220]")
    p.add_argument("--kill-every", type=int, default=10)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=10)
    args = p.parse_args()
    budget = args.iterations
    kills = dict(kill_every=args.kill_every)
    partial = run(
        "priority+partial",
        args,
        checkpoint="priority",
        fraction=FRACTION,
        recovery="partial",
        eval_every=args.eval_every,
        **kills,
    )
    full = run("full+full", args, checkpoint="full", recovery="full", eval_every=1, **kills)
    clean = run("clean", args, checkpoint="priority", fraction=FRACTION, eval_every=args.eval_every)

    rows = {}
    for name, doc in (("clean", clean), ("priority+partial", partial), ("full+full", full)):
        t = doc["totals"]
        if name == "full+full":
            iteration, objective = at_steps(doc, budget)
        else:
            if t["steps"] != budget:  # partial recovery and a clean run do every step once
                raise SystemExit(f"{name}: {t['steps']} steps, expected {budget}")
            iteration, objective = t["iterations"], doc["objective_final"]
        rows[name] = {
            "kills": t["failures"],
            "steps": t["steps"],
            "iteration_at_budget": iteration,
            "objective_at_budget": objective,
            "objective_final": doc["objective_final"],
            "wall_seconds": round(t["wall_seconds"], 1),
        }
    f_clean = rows["clean"]["objective_at_budget"]
    for r in rows.values():
        r["gap_to_clean"] = (r["objective_at_budget"] - f_clean) / f_clean

    print(f"DLRM criteo-synth on Ray: {args.shards} shards, {args.workers} workers, a shard "
          f"SIGKILLed every {args.kill_every} iterations, seed {args.seed}; objective after "
          f"{budget} executed steps")  # fmt: skip
    head = f"{'run':<18}{'kills':>6}{'steps':>7}{'iter@budget':>12}{'objective':>11}{'gap':>9}"
    print(head)
    for name, r in rows.items():
        print(f"{name:<18}{r['kills']:>6}{r['steps']:>7}{r['iteration_at_budget']:>12}"
              f"{r['objective_at_budget']:>11.5f}{r['gap_to_clean']:>+9.2%}")  # fmt: skip
    gap_p, gap_f = (abs(rows[n]["gap_to_clean"]) for n in ("priority+partial", "full+full"))
    summary = {
        "budget_steps": budget,
        "kill_every": args.kill_every,
        "shards": args.shards,
        "workers": args.workers,
        "seed": args.seed,
        "runs": rows,
        "partial_within_1_percent": gap_p <= 0.01,
        "partial_closer_than_full": gap_p < gap_f,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
