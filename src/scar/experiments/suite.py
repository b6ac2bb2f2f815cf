"""The paper's evaluation as one resumable run (SPEC section 4).

A *suite* is a list of tasks, each writing one JSON file under ``OUT/results``:

1. ``bound-<model>-<dataset>``: perturbations of controlled size (``perturb.sweep``);
2. ``recovery-...``: partial vs full recovery of full checkpoints, lost fraction 1/8 .. 1;
3. ``policy-...``: priority vs round-robin vs random (r = 1/2 .. 1/16) vs full, partial recovery;
4. ``headline-...``: SCAR (priority 1/8 + partial) vs traditional (full + rollback) at p = 1/4,
   for every model x dataset.

A task whose file exists with the same settings is not run again, so an interrupted run
resumes where it stopped. Tasks run in worker processes (``jobs``), started by *spawn*: numba's
OpenMP threads do not survive a fork.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .. import validation as check
from ..algorithms import registry as models
from ..jsonio import write_json
from ..validation import DEFAULT_FRACTION
from .cell import run_cell
from .clean import prepare
from .config import ExperimentConfig

LOST_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)
FRACTIONS = (1 / 2, 1 / 4, 1 / 8, 1 / 16)
HEADLINE_LOST = 1 / 4
SCAR_FRACTION = DEFAULT_FRACTION  # SCAR in the headline: its default fraction r
TRIALS = {"full": 10, "quick": 5}  # trials per cell, unless the user gives a number


@dataclass(frozen=True)
class Task:
    id: str
    experiment: str  # bound | recovery | policy | headline
    model: str
    dataset: str
    optimizer: str
    config: dict[str, Any] = field(default_factory=dict)  # ExperimentConfig fields or sweep args

    def settings_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# The data sets of each model, (primary, second): experiments 1-3 run on the primary one, the
# headline on both. The quick run swaps MNIST (70,000 x 785, minutes per cell) for digits.
SUITE_DATASETS = {
    "full": {
        "mlr": ("mnist", "bio"),
        "mf": ("movielens-100k", "movielens-small"),
        "lda": ("reuters", "news-articles"),
    },
    "quick": {
        "mlr": ("digits", "bio"),
        "mf": ("movielens-100k", "movielens-small"),
        "lda": ("reuters", "news-articles"),
        "cnn": ("mnist",),
        "dlrm": ("criteo-synth", "movielens-100k"),
    },
}
SUITE_DATASETS["full"]["cnn"] = ("mnist",)
SUITE_DATASETS["full"]["dlrm"] = ("criteo-synth", "movielens-100k")
# The torch models run the headline cells only (experiments 1-3 study the numpy models); the
# quick run trains them on fewer examples (the DLRM evaluates on fewer: fewer to train on would
# take it past its first epoch).
HEADLINE_ONLY = ("cnn", "dlrm")
QUICK_HYPER = {"cnn": {"examples": 2000, "eval_size": 500}, "dlrm": {"eval_size": 500}}


def suite_datasets(model: str, quick: bool) -> tuple[str, ...]:
    return SUITE_DATASETS["quick" if quick else "full"][model]


def plan(
    model_names: Iterable[str],
    quick: bool,
    trials: int | None = None,
    datasets: dict[str, tuple[str, ...]] | None = None,
) -> list[Task]:
    """Every task of the suite for these models, in the order they should run. ``datasets``
    overrides a model's data sets (the first is then the primary one)."""
    trials = trials if trials is not None else TRIALS["quick" if quick else "full"]
    tasks: list[Task] = []
    for model in model_names:
        check.one_of("model", model, models.MODELS)
        names = (datasets or {}).get(model)
        if not names:
            names = suite_datasets(model, quick)
        tasks += _plan_model(model, tuple(names), trials, quick)
    return tasks


def _plan_model(model: str, names: tuple[str, ...], trials: int, quick: bool) -> list[Task]:
    """Experiments 1-3 on the primary data set (not for HEADLINE_ONLY models), then the
    headline on every data set."""
    optimizer = models.MODEL_OPTIMIZERS[model][0]
    primary = names[0]
    hyper = QUICK_HYPER.get(model, {}) if quick else {}

    def cell(experiment: str, dataset: str, name: str, **kw: Any) -> Task:
        cfg = dict(
            model=model, optimizer=optimizer, shards=8, trials=trials, seed=0, dataset=dataset, **kw
        )
        if hyper:
            cfg["hyper"] = dict(hyper)
        ExperimentConfig(**cfg).validate()
        return Task(
            f"{experiment}-{model}-{dataset}-{name}", experiment, model, dataset, optimizer, cfg
        )

    k = round(HEADLINE_LOST * 8)
    tasks = [] if model in HEADLINE_ONLY else _paper_experiments(model, primary, quick, cell)
    for dataset in names:
        tasks.append(
            cell(
                "headline",
                dataset,
                "traditional",
                lost_shards=k,
                checkpoint="full",
                recovery="full",
            )
        )
        tasks.append(
            cell(
                "headline",
                dataset,
                "scar",
                lost_shards=k,
                checkpoint="priority",
                fraction=SCAR_FRACTION,
                recovery="partial",
            )
        )
        if model in models.REBUILD_MODELS:  # beyond the paper: SCAR's cell, recomputing
            tasks.append(
                cell(
                    "headline",
                    dataset,
                    "rebuild",
                    lost_shards=k,
                    checkpoint="priority",
                    fraction=SCAR_FRACTION,
                    recovery="rebuild",
                )
            )
    return tasks


def _paper_experiments(
    model: str, primary: str, quick: bool, cell: Callable[..., Task]
) -> list[Task]:
    """The bound illustration, partial vs full recovery and the policies, on ``primary``."""
    optimizer = models.MODEL_OPTIMIZERS[model][0]
    tasks = [
        Task(
            f"bound-{model}-{primary}",
            "bound",
            model,
            primary,
            optimizer,
            {"quick": quick, "seed": 0},
        )
    ]
    for p in LOST_FRACTIONS:
        k = round(p * 8)
        for rec in ("full", "partial"):
            tasks.append(
                cell(
                    "recovery",
                    primary,
                    f"lost{k}-{rec}",
                    lost_shards=k,
                    checkpoint="full",
                    recovery=rec,
                )
            )
    k = round(HEADLINE_LOST * 8)
    tasks.append(
        cell("policy", primary, "full", lost_shards=k, checkpoint="full", recovery="partial")
    )
    for r in FRACTIONS:
        for pol in ("priority", "round-robin", "random"):
            tasks.append(
                cell(
                    "policy",
                    primary,
                    f"{pol}-r{round(1 / r)}",
                    lost_shards=k,
                    checkpoint=pol,
                    fraction=r,
                    recovery="partial",
                )
            )
    return tasks


def sweep_settings(model: str, quick: bool) -> dict[str, Any]:
    """What the bound illustration injects, per model (continuous models also get scaled
    random / adversarial perturbations; LDA's counts only get resets)."""
    kinds = {"mlr": ("random", "adversarial", "reset"), "mf": ("random", "reset")}.get(
        model, ("reset",)
    )
    return {
        "kinds": kinds,
        "fractions_of_run": (0.2, 0.5) if quick else (0.2, 0.4, 0.6, 0.8),
        "sizes": (0.03, 0.3, 1.0) if quick else (0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        "ages": (5, 20) if quick else (2, 5, 10, 20, 40),
        "lost": (1, 2, 4, 8),
    }


def run_task(task: Task) -> dict[str, Any]:
    """Run one task in this process; returns its result document (without the task stamp)."""
    if task.experiment != "bound":
        return run_cell(ExperimentConfig(**task.config))
    from .perturb import sweep

    d = models.defaults(task.model, task.optimizer)
    algo, clean = prepare(task.model, task.dataset, task.optimizer, (), 0, d.epsilon, d.smooth)
    s = sweep_settings(task.model, task.config["quick"])
    times = sorted({max(1, round(f * clean.iterations)) for f in s["fractions_of_run"]})
    points = sweep(
        algo,
        clean,
        d.smooth,
        8,
        s["kinds"],
        times,
        s["sizes"],
        s["ages"],
        s["lost"],
        seed=task.config["seed"],
    )
    return {
        "config": {
            "model": task.model,
            "dataset": task.dataset,
            "optimizer": task.optimizer,
            "epsilon": d.epsilon,
            **s,
            "times": times,
        },
        "clean": clean.summary(),
        "points": points,
    }


def _stamp(doc: dict[str, Any], task: Task) -> dict[str, Any]:
    """``doc`` stamped as ``task``'s result (a stamp it had already is replaced)."""
    return {
        **doc,
        "task": {"id": task.id, "experiment": task.experiment, "hash": task.settings_hash()},
    }


def _work_key(task: Task) -> str:
    """Tasks with the same work (the headline cells repeat cells of experiments 2 and 3 on the
    primary data set) run once."""
    return json.dumps(
        [task.experiment == "bound", task.model, task.dataset, task.optimizer, task.config],
        sort_keys=True,
    )


def is_done(path: Path, task: Task) -> bool:
    try:
        doc = json.loads(path.read_text())
        return doc.get("task", {}).get("hash") == task.settings_hash()
    except (OSError, ValueError, AttributeError):
        return False


def run_suite(
    tasks: list[Task],
    out: Path,
    jobs: int = 1,
    on_start: Callable[[int, int], None] | None = None,
    on_done: Callable[[Task, float], None] | None = None,
) -> list[Task]:
    """Run the tasks not yet done; results go to ``out/results/<id>.json``. Returns the tasks
    that were run (the others were already done)."""
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if not is_done(results / f"{t.id}.json", t)]
    if on_start:
        on_start(len(tasks) - len(todo), len(tasks))
    if not todo:
        return []
    groups: dict[str, list[Task]] = {}
    for t in todo:
        groups.setdefault(_work_key(t), []).append(t)
    weights = cost_weights(todo)

    def finish(group: list[Task], doc: dict[str, Any]) -> None:
        for t in group:
            write_json(results / f"{t.id}.json", _stamp(doc, t))
            if on_done:
                on_done(t, weights[t.id])

    if jobs <= 1:
        for group in groups.values():
            finish(group, run_task(group[0]))
        return todo
    with _one_thread_each():
        _run_lanes(list(groups.values()), jobs, finish)
    return todo


@contextmanager
def _one_thread_each() -> Iterator[None]:
    """One BLAS / numba thread in each worker process started meanwhile: the processes are
    the parallelism."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave as soon as the parent is gone (killed by SIGTERM or SIGKILL,
    it cannot shut its pool down), instead of computing on for nobody."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="scar-parent-watch").start()


def _prepare_key(task: Task) -> str:
    """What a task's worker must compute before its trials: the algorithm, its optimum and its
    clean run (``clean.prepare``, cached per process)."""
    c = task.config
    return json.dumps(
        [
            task.model,
            task.dataset,
            task.optimizer,
            c.get("hyper", {}),
            c.get("seed", 0),
            c.get("epsilon"),
        ],
        sort_keys=True,
    )


def _run_lanes(
    groups: list[list[Task]], jobs: int, finish: Callable[[list[Task], dict[str, Any]], None]
) -> None:
    """Run task groups on ``jobs`` single-process lanes, sending each task to a lane that has
    already prepared its model and data set where one can take it. A lane with nothing of its
    own takes a data set no other lane has prepared, and only then shares one (the one with
    the most tasks left): MNIST's optimum and clean run, or a long MF run, are then computed
    once, not once per worker."""
    ctx = get_context("spawn")
    lanes = [
        ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)
        )
        for _ in range(jobs)
    ]
    prepared: list[set[str]] = [set() for _ in lanes]
    pending = list(groups)
    running: dict[Future, tuple[int, list[Task]]] = {}

    def pick(lane: int) -> list[Task]:
        keys = [_prepare_key(g[0]) for g in pending]
        others = set().union(*(p for i, p in enumerate(prepared) if i != lane))
        for want in (
            lambda k: k in prepared[lane],
            lambda k: k not in others,
        ):
            for i, k in enumerate(keys):
                if want(k):
                    return pending.pop(i)
        i = max(range(len(keys)), key=lambda i: keys.count(keys[i]))
        return pending.pop(i)

    try:
        free = list(range(jobs))
        while pending or running:
            while free and pending:
                lane = free.pop(0)
                group = pick(lane)
                prepared[lane].add(_prepare_key(group[0]))
                running[lanes[lane].submit(run_task, group[0])] = (lane, group)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                lane, group = running.pop(fut)
                finish(group, fut.result())
                free.append(lane)
    finally:
        for ex in lanes:
            ex.shutdown(cancel_futures=True)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def cost_weights(tasks: list[Task]) -> dict[str, float]:
    """Rough relative cost of each task, so the progress bar's time estimate is meaningful:
    proportional to trials, heavier for sweeps."""
    w = {}
    for t in tasks:
        if t.experiment == "bound":
            w[t.id] = 8.0
        else:
            w[t.id] = t.config.get("trials", 10) / 5
    return w
