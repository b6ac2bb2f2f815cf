"""The full run's adaptive trials: each headline pair (traditional vs SCAR) gets trials until
the 95 % interval of its reduction is narrow enough, or the cap (SPEC section 4; the cells
themselves come from :func:`~scar.experiments.suite.run_suite`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from ..jsonio import write_json
from .cell import extend_cell, reduction_ci
from .config import ExperimentConfig
from .suite import Task, _exit_with_parent, _one_thread_each, _stamp

# The full run adds trials to each headline pair, ADAPT_STEP at a time, until the 95 % interval
# of the reduction is at most ADAPT_WIDTH wide (or the cells hold ADAPT_CAP trials each)
ADAPT_WIDTH, ADAPT_CAP, ADAPT_STEP = 0.20, 100, 10


def headline_pairs(tasks: list[Task]) -> list[tuple[Task, Task]]:
    """The (traditional, scar) headline tasks of each model and data set."""
    cells = {t.id: t for t in tasks if t.experiment == "headline"}
    return [
        (cells[i], cells[i[: -len("traditional")] + "scar"])
        for i in sorted(cells)
        if i.endswith("-traditional") and i[: -len("traditional")] + "scar" in cells
    ]


def adapt_trials(
    tasks: list[Task],
    out: Path,
    width: float = ADAPT_WIDTH,
    cap: int = ADAPT_CAP,
    step: int = ADAPT_STEP,
    on_step: Callable[[Task, int, float | None], None] | None = None,
    jobs: int = 1,
) -> None:
    """Add trials to both cells of each headline pair (in ``out/results``) until the 95 %
    interval of the reduction is at most ``width`` wide, ``step`` trials at a time, up to
    ``cap`` per cell. Each cell records in ``adaptive`` the rule and the interval's width
    (None when traditional recovery cost nothing: no reduction to narrow). A pair's rebuild
    cell, if it has one, gets the same trials. Resumable: a pair read back already narrow
    enough is left as it is.

    With ``jobs`` > 1 the pairs are adapted in that many worker processes, a pair whole in
    one, the pairs likely to need the most trials first; the trials are the same (a trial's
    seed is its index), and ``on_step`` hears of a pair once, when it is done."""
    ids = {t.id: t for t in tasks}
    pairs = [
        (trad, scar, ids.get(scar.id[: -len("scar")] + "rebuild"))
        for trad, scar in headline_pairs(tasks)
    ]
    rule = (width, cap, step)
    if jobs <= 1 or len(pairs) <= 1:
        for pair in pairs:
            adapt_pair(pair, out, rule, on_step)
        return
    results = out / "results"
    pairs.sort(key=lambda pair: -_trials_wanted(results, pair, rule))
    with (
        _one_thread_each(),
        ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool,
    ):
        running = {pool.submit(adapt_pair, pair, out, rule): pair for pair in pairs}
        try:
            for fut in as_completed(running):
                n, w = fut.result()
                if on_step:
                    on_step(running[fut][1], n, w)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def adapt_pair(
    pair: tuple[Task, Task, Task | None],
    out: Path,
    rule: tuple[float, int, int],
    on_step: Callable[[Task, int, float | None], None] | None = None,
) -> tuple[int, float | None]:
    """:func:`adapt_trials` for one (traditional, scar, rebuild or None) headline pair, in this
    process; returns the pair's trials and its interval's width."""
    trad, scar, rebuild = pair
    width, cap, step = rule
    results = out / "results"
    paths = [results / f"{t.id}.json" for t in (trad, scar)]
    docs = [json.loads(p.read_text()) for p in paths]
    while True:
        ci = reduction_ci(docs[0]["trials"], docs[1]["trials"])
        w = None if ci is None else ci[1] - ci[0]
        n = min(len(d["trials"]) for d in docs)
        if on_step:
            on_step(scar, n, w)
        if w is None or w <= width or n >= cap:
            break
        more = min(step, cap - n)
        docs = [
            extend_cell(d, ExperimentConfig(**t.config), more)
            for d, t in zip(docs, (trad, scar), strict=True)
        ]
    for d, t, p in zip(docs, (trad, scar), paths, strict=True):
        d["adaptive"] = {"width_target": width, "cap": cap, "step": step, "width": w}
        write_json(p, _stamp(d, t))
    # the pair's rebuild cell follows with the same trials, so that the report sets the
    # three recoveries side by side on the same failures and chains
    path = results / f"{rebuild.id}.json" if rebuild else None
    if path is not None and path.exists():
        doc = json.loads(path.read_text())
        more = len(docs[1]["trials"]) - len(doc["trials"])
        if more > 0:
            doc = extend_cell(doc, ExperimentConfig(**rebuild.config), more)
            write_json(path, _stamp(doc, rebuild))
    return n, w


def _trials_wanted(results: Path, pair: tuple[Task, Task, Task | None], rule) -> float:
    """A guess of the trials a pair will add: the width shrinks as one over the square root
    of the trials."""
    width, cap, _ = rule
    docs = [json.loads((results / f"{t.id}.json").read_text()) for t in pair[:2]]
    n = min(len(d["trials"]) for d in docs)
    ci = reduction_ci(docs[0]["trials"], docs[1]["trials"])
    if ci is None or ci[1] - ci[0] <= width or n >= cap:
        return 0.0
    return cap - n if width <= 0 else min(cap, n * ((ci[1] - ci[0]) / width) ** 2) - n
