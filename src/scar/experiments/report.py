"""Figures and REPORT.md from a suite's ``results/*.json`` (nothing is recomputed here)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .headline import fmt_summary, headline_rows, headline_section, rebuild_section

POLICY_STYLE = {
    "priority": ("tab:red", "o"),
    "round-robin": ("tab:blue", "s"),
    "random": ("tab:gray", "^"),
    "full": ("black", ""),
}


def load_results(out: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    for f in sorted((out / "results").glob("*.json")):
        doc = json.loads(f.read_text())
        if "task" in doc:
            docs[doc["task"]["id"]] = doc
    return docs


def _ci(summary: dict[str, Any]) -> tuple[float, float]:
    lo, hi = summary["rework_ci95"]
    return summary["rework_mean"] - lo, hi - summary["rework_mean"]


def _by(docs: dict[str, dict], experiment: str) -> dict[str, list[dict]]:
    """Result documents of one experiment, grouped by model."""
    out: dict[str, list[dict]] = defaultdict(list)
    for doc in docs.values():
        if doc["task"]["experiment"] == experiment:
            out[doc["config"]["model"]].append(doc)
    return out


def _zero_line(ax) -> None:
    """Start the rework axis at 0, unless some rework is negative (a stochastic run that reached
    its target early): then show it, with a line at 0."""
    low, high = ax.get_ylim()
    if low >= 0:
        ax.set_ylim(0, high)
    else:
        ax.axhline(0.0, color="0.5", lw=0.8)


def _axes(n: int, width: float = 4.6, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), squeeze=False)
    return fig, axes[0]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def figure_bound(docs: dict[str, dict], path: Path) -> bool:
    sweeps = [d for d in docs.values() if d["task"]["experiment"] == "bound"]
    if not sweeps:
        return False
    fig, axes = _axes(len(sweeps))
    markers = {"random": "o", "adversarial": "^", "reset": "s"}
    for ax, doc in zip(axes, sweeps, strict=True):
        cfg, clean = doc["config"], doc["clean"]
        pts = [p for p in doc["points"] if p["distance"]]
        for kind in cfg["kinds"]:
            sel = [p for p in pts if p["kind"] == kind]
            if sel:
                x = [p["perturbation_norm"] / p["distance"] for p in sel]
                ax.scatter(
                    x,
                    [max(p["rework"], 0.05) for p in sel],
                    marker=markers[kind],
                    s=22,
                    alpha=0.75,
                    label=f"measured: {kind}",
                )
        c = clean.get("contraction")
        if c:
            x = np.logspace(
                math.log10(min(p["perturbation_norm"] / p["distance"] for p in pts)),
                math.log10(max(p["perturbation_norm"] / p["distance"] for p in pts)),
                100,
            )
            ax.plot(x, 1 + np.log1p(x) / math.log(1 / c), "k-", lw=1.5, label=f"bound, c = {c:.4f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel("perturbation size ‖δ‖ / ‖x(T) − x*‖")
        ax.set_ylabel("rework (extra iterations; ≤ 0 drawn at 0.05)")
        ref = "x*" if c else "end of clean run"
        ax.set_title(
            f"{cfg['model'].upper()} / {cfg['dataset']} ({cfg['optimizer']}); x* = {ref}"
            if not c
            else f"{cfg['model'].upper()} / {cfg['dataset']} ({cfg['optimizer']})"
        )
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    _save(fig, path)
    return True


def _series(ax, cells: list[dict], x: Callable[[dict], float], **style: Any) -> None:
    """One line of cells: mean rework with its 95 % CI as error bars, against ``x(cell)``."""
    cells = sorted(cells, key=x)
    ax.errorbar(
        [x(c) for c in cells],
        [c["summary"]["rework_mean"] for c in cells],
        yerr=np.array([_ci(c["summary"]) for c in cells]).T,
        capsize=3,
        **style,
    )


def figure_recovery(docs: dict[str, dict], path: Path) -> bool:
    groups = _by(docs, "recovery")
    if not groups:
        return False
    fig, axes = _axes(len(groups))
    for ax, (model, cells) in zip(axes, sorted(groups.items()), strict=True):
        for rec, color in (("full", "black"), ("partial", "tab:red")):
            sel = [c for c in cells if c["config"]["recovery"] == rec]
            _series(
                ax,
                sel,
                lambda c: c["config"]["lost_shards"] / c["config"]["shards"],
                marker="o",
                color=color,
                label=f"{rec} recovery (full checkpoints)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1 / 8, 1 / 4, 1 / 2, 1], ["1/8", "1/4", "1/2", "1"])
        ax.set_xlabel("fraction of shards lost")
        ax.set_ylabel("rework (iterations), mean ± 95 % CI")
        ax.set_title(f"{model.upper()} / {sel[0]['config']['dataset']}")
        _zero_line(ax)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def figure_policies(docs: dict[str, dict], path: Path) -> bool:
    groups = _by(docs, "policy")
    if not groups:
        return False
    fig, axes = _axes(len(groups))
    for ax, (model, cells) in zip(axes, sorted(groups.items()), strict=True):
        for pol in ("priority", "round-robin", "random"):
            sel = [c for c in cells if c["config"]["checkpoint"] == pol]
            if not sel:
                continue
            color, marker = POLICY_STYLE[pol]
            _series(
                ax, sel, lambda c: c["config"]["fraction"], color=color, marker=marker, label=pol
            )
        full = [c for c in cells if c["config"]["checkpoint"] == "full"]
        if full:
            ax.axhline(
                full[0]["summary"]["rework_mean"],
                color="black",
                ls="--",
                label="full checkpoint (every C)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1 / 16, 1 / 8, 1 / 4, 1 / 2], ["1/16", "1/8", "1/4", "1/2"])
        ax.set_xlabel("fraction r saved per checkpoint (every r·C iterations)")
        ax.set_ylabel("rework (iterations), mean ± 95 % CI")
        ax.set_title(
            f"{model.upper()} / {cells[0]['config']['dataset']}: partial recovery, "
            f"{cells[0]['config']['lost_shards']} of 8 shards lost",
            fontsize=9,
        )
        _zero_line(ax)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def figure_headline(rows: list[dict[str, Any]], path: Path) -> bool:
    if not rows:
        return False
    fig, axes = _axes(1, width=max(6.5, 1.6 * len(rows)), height=4.0)
    ax = axes[0]
    x = np.arange(len(rows))
    for off, key, color, label in (
        (-0.2, "traditional", "black", "traditional: full C + rollback"),
        (0.2, "scar", "tab:red", "SCAR: priority r=1/8 + partial"),
    ):
        bars = ax.bar(
            x + off,
            [r[key]["rework_mean"] for r in rows],
            width=0.4,
            color=color,
            alpha=0.8,
            yerr=np.array([_ci(r[key]) for r in rows]).T,
            capsize=3,
            label=label,
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(
        x,
        [
            f"{r['model'].upper()}\n{r['dataset']}"
            + ("" if r["reduction"] is None else f"\nSCAR: {-100 * r['reduction']:+.0f} %")
            for r in rows
        ],
    )
    ax.set_ylabel("rework (iterations), mean ± 95 % CI")
    ax.set_title("Rework after losing 2 of 8 shards, at equal checkpoint cost", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)
    return True


def write_report(out: Path, command: str) -> Path:
    """Write the figures and REPORT.md for the results under ``out``."""
    docs = load_results(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    rows = headline_rows(docs)
    made = {
        "bound": figure_bound(docs, figs / "bound.png"),
        "recovery": figure_recovery(docs, figs / "partial_vs_full.png"),
        "policies": figure_policies(docs, figs / "policies.png"),
        "headline": figure_headline(rows, figs / "headline.png"),
    }
    lines = [
        "# SCAR reproduction report",
        "",
        f"Produced by `{command}`; every number below is read from `results/*.json` in "
        "this folder. Rework = extra iterations (re-done ones included) that a run with one "
        "failure needs to reach the clean run's target objective, from where the (smoothed) "
        "objective crosses the target, interpolated between iterations (so a fraction of an "
        "iteration shows); mean ± std [95 % confidence interval of the mean] over the trials "
        "of a cell. A deterministic algorithm (MLR with full-batch GD, MF-ALS) is compared "
        "with its one clean run; a stochastic one (minibatch SGD, LDA's Gibbs chain, the torch "
        "models) draws another chain of randomness for each trial, from the same start, and "
        "each failed run is compared with the clean run of its own chain (paired clean "
        "chains): T_clean is then the chains' mean ± std.",
        "",
    ]
    lines += headline_section(rows, made["headline"])
    lines += rebuild_section(rows)
    lines += _recovery_section(docs, made["recovery"])
    lines += _policy_section(docs, made["policies"])
    lines += _bound_section(docs, made["bound"])
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _grid(cells: list[dict], row: Callable[[dict], Any], col: Callable[[dict], str]):
    """Result documents arranged as {row key: {column key: document}}."""
    out: dict[Any, dict[str, dict]] = defaultdict(dict)
    for c in cells:
        out[row(c)][col(c)] = c
    return out


def _table(title: str, columns: list[str], rows: list[list[str]], figure: str | None) -> list[str]:
    """A report section: a heading, a Markdown table and, when made, its figure."""
    if not rows:
        return []
    lines = [f"## {title}", "", "| " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if figure:
        lines += ["", figure]
    return lines + [""]


def _recovery_section(docs, has_fig) -> list[str]:
    rows = []
    for model, cells in sorted(_by(docs, "recovery").items()):
        grid = _grid(cells, lambda c: c["config"]["lost_shards"], lambda c: c["config"]["recovery"])
        for k, pair in sorted(grid.items()):
            if {"full", "partial"} <= set(pair):
                rows.append(
                    [model.upper(), pair["full"]["config"]["dataset"], f"{k}/8"]
                    + [fmt_summary(pair[m]["summary"]) for m in ("full", "partial")]
                )
    return _table(
        "Partial vs full recovery (full checkpoints every C)",
        ["model", "dataset", "lost", "full recovery", "partial recovery"],
        rows,
        has_fig and "![partial vs full](figures/partial_vs_full.png)",
    )


def _policy_section(docs, has_fig) -> list[str]:
    rows = []
    collapsed: set[tuple[str, int, str]] = set()
    policies = ("priority", "round-robin", "random")
    for model, cells in sorted(_by(docs, "policy").items()):
        lead = [model.upper(), cells[0]["config"]["dataset"]]
        grid = _grid(cells, lambda c: c["config"]["fraction"], lambda c: c["config"]["checkpoint"])
        full = grid.pop(None, {}).get("full")
        for r, row in sorted(grid.items(), reverse=True):
            period = next(iter(row.values()))["config"]["period"]
            same = r * period < 1  # saves every iteration: 1/C of the rows, whatever r
            if same:
                collapsed.add((model.upper(), period, f"1/{round(1 / r)}"))
            rows.append(
                lead
                + [f"1/{round(1 / r)}" + (" †" if same else "")]
                + [fmt_summary(row[p]["summary"]) if p in row else "—" for p in policies]
            )
        if full:
            rows.append(lead + ["full (every C)", fmt_summary(full["summary"]), "", ""])
    lines = _table(
        "Priority vs round-robin vs random at equal cost (partial recovery)",
        ["model", "dataset", "r", *policies],
        rows,
        has_fig and "![policies](figures/policies.png)",
    )
    if collapsed:
        which = "; ".join(f"{m}: r = {r} with C = {c}" for m, c, r in sorted(collapsed))
        lines += [
            f"† r·C < 1 ({which}): a partial checkpoint cannot come more often than every "
            "iteration, so the policy saves 1/C of the rows at every iteration - the same "
            "rows and bytes as r = 1/C. These rows repeat that setting rather than test a "
            "smaller r.",
            "",
        ]
    return lines


def _bound_section(docs, has_fig) -> list[str]:
    sweeps = [d for d in docs.values() if d["task"]["experiment"] == "bound"]
    if not sweeps:
        return []
    lines = [
        "## Rework vs perturbation size, and the bound",
        "",
        "Perturbations injected after iterations spread over the clean run: random and "
        "adversarial (away from the optimum) directions scaled relative to the distance "
        "still to go, and resets of 1-8 shards to older values (a failure restored from a "
        "checkpoint of that age). The bound `1 + log(1 + ‖δ‖/‖x(T) − x*‖) / log(1/c)` "
        "applies to deterministic contractions (MLR with full-batch GD).",
        "",
    ]
    for d in sweeps:
        pts = d["points"]
        with_bound = [p for p in pts if p["bound"] is not None]
        held = sum(p["rework"] <= p["bound"] for p in with_bound)
        c = d["clean"].get("contraction")
        text = (
            f"bound held (rework ≤ bound) for {held} of {len(with_bound)} "
            f"perturbations, c = {c:.5f}"
            if with_bound
            else "no bound (c undefined)"
        )
        lines.append(
            f"- {d['config']['model'].upper()} / {d['config']['dataset']}: "
            f"{len(pts)} perturbations; {text}; largest rework "
            f"{max(p['rework'] for p in pts):.2f} iterations."
        )
    if has_fig:
        lines += ["", "![bound](figures/bound.png)"]
    return lines + [""]
