"""The five strategies side by side on MF and LDA: the table of docs/reproduce.md.

    .venv/bin/python scripts/strategies.py [--out out/strategies] [--trials 10]

Each row is one (model, data set, shards lost); its five cells see the same failures (same
seed): traditional (full checkpoint every C + full rollback), a full checkpoint + partial
recovery, and priority (SCAR), round-robin and random checkpoints at r = 1/8 every C/8 +
partial recovery. Rework is the fractional one of the report, mean +- std over the trials.
Every cell is the result file of `scar experiment` with the same settings, kept in OUT and not
run again while its settings are unchanged.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from scar.experiments.cell import run_cell
from scar.experiments.config import ExperimentConfig

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


def cell(out: Path, cfg: ExperimentConfig) -> dict:
    name = f"{cfg.model}-{cfg.dataset}-lost{cfg.lost_shards}-{cfg.checkpoint}-{cfg.recovery}"
    path = out / f"{name}.json"
    want = asdict(cfg)
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("settings") == want:
            return doc
    doc = run_cell(cfg)
    doc["settings"] = want
    path.write_text(json.dumps(doc))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/strategies")
    ap.add_argument("--trials", type=int, default=10)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    head = ["data set", "lost", "T_clean", "C", *(s[0] for s in STRATEGIES)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for model, optimizer, dataset, lost in ROWS:
        docs = []
        for _, checkpoint, recovery in STRATEGIES:
            cfg = ExperimentConfig(
                model=model, optimizer=optimizer, dataset=dataset, shards=8, lost_shards=lost,
                checkpoint=checkpoint, recovery=recovery, trials=a.trials, seed=0,
                fraction=None if checkpoint == "full" else 0.125,
            )  # fmt: skip
            docs.append(cell(out, cfg))
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
