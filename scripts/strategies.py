"""The five strategies side by side on MF and LDA: the table of docs/reproduce.md.

    .venv/bin/python scripts/strategies.py [--out out/strategies] [--trials 10]

Each row is one (model, data set, shards lost); its five cells see the same failures (same
seed): traditional (full checkpoint every C + full rollback), a full checkpoint + partial
recovery, and priority (SCAR), round-robin and random checkpoints at r = 1/8 every C/8 +
partial recovery. Rework is the fractional one of the report, mean +- std over the trials.
Every cell is the result file of `scar experiment` with the same settings, run as `scar
reproduce` runs its cells (OUT/results/<cell>.json, not run again while its settings are
unchanged; --jobs worker processes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scar.experiments.config import ExperimentConfig
from scar.experiments.suite import Task, run_suite

ROWS = [
    ("mf", "als", "movielens-100k", 2),
    ("mf", "als", "movielens-100k", 4),
    ("mf", "als", "movielens-small", 2),
    ("lda", "gibbs", "reuters", 2),
    ("lda", "gibbs", "reuters", 4),
    ("lda", "gibbs", "news-articles", 2),
    ("lda", "gibbs", "news-articles", 4),
]
STRATEGIES = [  # (column, checkpoint, recovery)
    ("traditional", "full", "full"),
    ("full ckpt + partial", "full", "partial"),
    ("**SCAR**", "priority", "partial"),
    ("round-robin + partial", "round-robin", "partial"),
    ("random + partial", "random", "partial"),
]


def task(
    model: str, optimizer: str, dataset: str, lost: int, checkpoint: str, recovery: str, trials: int
) -> Task:
    cfg = dict(
        model=model, optimizer=optimizer, dataset=dataset, shards=8, lost_shards=lost,
        checkpoint=checkpoint, recovery=recovery, trials=trials, seed=0,
        fraction=None if checkpoint == "full" else 0.125,
    )  # fmt: skip
    ExperimentConfig(**cfg).validate()
    name = f"strategy-{model}-{dataset}-lost{lost}-{checkpoint}-{recovery}"
    return Task(name, "strategy", model, dataset, optimizer, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/strategies")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    out = Path(a.out)
    rows = {
        row: [task(*row, checkpoint, recovery, a.trials) for _, checkpoint, recovery in STRATEGIES]
        for row in ROWS
    }
    run_suite([t for ts in rows.values() for t in ts], out, jobs=a.jobs)
    head = ["data set", "lost", "T_clean", "C", *(s[0] for s in STRATEGIES)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (model, _, dataset, lost), tasks in rows.items():
        docs = [json.loads((out / "results" / f"{t.id}.json").read_text()) for t in tasks]
        s = [d["summary"] for d in docs]
        chains = s[0].get("clean_chains")  # stochastic: the mean of the trials' clean chains
        t_clean = chains["crossing_mean"] if chains else docs[0]["clean"]["clean_crossing"]
        row = [f"{dataset} ({model.upper()})", f"{lost}/8", f"{t_clean:,.0f}"]
        row.append(str(docs[0]["config"]["period"]))
        trad = s[0]["rework_mean"]
        for (col, *_), x in zip(STRATEGIES, s, strict=True):
            text = f"{x['rework_mean']:.1f} ± {x['rework_std']:.1f}"
            if col == "**SCAR**":
                cut = f" ({100 * (x['rework_mean'] / trad - 1):+.0f} %)" if trad > 0 else ""
                text = f"**{text}**{cut}"
            row.append(text)
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
