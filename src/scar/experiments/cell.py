"""One experiment cell: a clean run, then N trials of failure + recovery, measuring rework.

Measured cost (SPEC section 2): the clean run fixes the target ``f* + eps * (f(0) - f*)`` and the
number of iterations ``T_clean`` its (smoothed) objective needs to reach it. Each trial trains the
same algorithm from the same start with checkpointing on, loses shards after iteration
``fail_at`` (after that iteration's checkpoint, if one was due), recovers, and counts every
iteration it executes - re-done ones included - until the target: ``rework = T_failed - T_clean``.
Runs are capped at ``max_factor * T_clean`` iterations; a capped trial is *censored* and kept.

The cell's settings and their checks are in ``config.py``, the clean run (and the trajectory
trials replay) in ``clean.py``; this module runs the trials and summarizes their rework.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from .. import theory
from .. import validation as check
from ..algorithms import registry as models
from ..algorithms.base import Algorithm
from ..checkpoint import Checkpointer
from ..policies import make_policy
from ..recovery import REBUILD
from ..state import State
from ..store.base import CheckpointStore
from ..store.memory import MemoryStore
from .clean import CleanRun, MovingAverage, chain_run, crossing_lag, prepare
from .config import ExperimentConfig

#: How a cell measures T_clean (``summary.estimator``): a deterministic algorithm has one clean
#: run; a stochastic one pairs each trial with the clean run of the trial's own chain.
ESTIMATORS = {False: "one clean run", True: "paired clean chains"}

# An event changes the state after an iteration and returns (restart iteration or None, record).
Event = Callable[[State, int], tuple[int | None, dict[str, Any]]]


def run_with_event(
    algo: Algorithm,
    clean: CleanRun,
    state: State,
    smooth: int,
    cap: int,
    event_at: int,
    event: Event,
    checkpointer: Checkpointer | None = None,
    start: int = 0,
    replay: bool = False,
) -> tuple[int, float, bool, dict[str, Any]]:
    """Train from ``state`` (which is at iteration ``start``) until the target, applying
    ``event`` after iteration ``event_at`` (``event_at == start``: before the first step).
    Returns (iterations executed since 0, how long before the last of them the smoothed
    objective crossed the target - ``clean.crossing_lag`` - censored, the event's record); a
    censored run returns the cap and lag 0.

    ``replay``: ``state`` is the clean run's start (``start == 0``), so until the event the
    iterations are taken from ``clean.trajectory`` where recorded instead of being recomputed
    (they are counted, checkpointed and evaluated exactly as computed ones)."""
    trajectory = clean.trajectory if replay and start == 0 else None
    ma = MovingAverage(smooth)
    record: dict[str, Any] = {}
    it = executed = start
    fired = False
    if event_at == start:
        fired = True
        restart, record = event(state, it)
        it = it if restart is None else restart
    if start < len(clean.objectives) and not fired:
        smoothed = clean.objectives[start]
    else:
        smoothed = algo.objective(state)
    while executed < cap:
        it += 1
        executed += 1
        replayed = not fired and trajectory is not None and trajectory.replay(algo, state, it)
        if not replayed:
            algo.step(state, it)
        if checkpointer is not None:
            checkpointer.step(it)
        if not fired and it == event_at:
            fired = True
            replayed = False
            restart, record = event(state, it)
            if restart is not None:
                it = restart
        f = clean.objectives[it] if replayed else algo.objective(state)
        before, smoothed = smoothed, ma(f)
        if smoothed <= clean.target:
            return executed, crossing_lag(before, smoothed, clean.target), False, record
    return cap, 0.0, True, record


def rework(executed: int, lag: float, clean: CleanRun) -> float:
    """Iterations to the target beyond the clean run's, from the interpolated crossings: the
    whole iterations, then the difference of the lags (exact when they are equal)."""
    return (executed - clean.iterations) + (clean.lag - lag)


def failure_event(
    algo: Algorithm, clean: CleanRun, ckpt: Checkpointer, lost: list[int], mode: str
) -> Event:
    """Lose ``lost`` shards, then recover with ``mode``; record the perturbation and bound."""

    def event(state: State, it: int) -> tuple[int | None, dict[str, Any]]:
        before = state.copy()
        ckpt.fail(lost)
        rec = ckpt.recover(lost, "partial" if mode == REBUILD else mode)
        restored = state.rows_of(lost) if mode != "full" else dict.fromkeys(state)
        if mode == "full":
            algo.set_aux_state(rec.aux)
        rebuilt, seconds = {}, None
        if mode == REBUILD:  # the rows the rest of the state determines: recomputed
            t0 = time.perf_counter()
            rebuilt = {n: restored[n] for n in algo.rebuilds(it)}
            algo.rebuild(state, rebuilt, it)
            seconds = time.perf_counter() - t0
            restored = {n: r for n, r in restored.items() if n not in rebuilt}
        algo.after_restore(state, restored)
        norm = theory.perturbation_norm(before, state)
        bound = None
        if algo.deterministic and clean.optimum is not None:
            bound = theory.rework_bound(
                clean.contraction, norm, theory.perturbation_norm(before, clean.optimum)
            )
        return rec.restart_iteration, {
            "perturbation_norm": norm,
            "bound": bound,
            "rows_restored": sum(rec.rows_restored.values()),
            "rows_rebuilt": sum(len(r) for r in rebuilt.values()),
            "rebuild_seconds": seconds,
            "restart_iteration": rec.restart_iteration,
        }

    return event


def draw_failure(cfg: ExperimentConfig, clean: CleanRun, trial_seed: int) -> tuple[int, list[int]]:
    """The failure iteration and the lost shards of one trial, drawn from its seed."""
    rng = np.random.default_rng([trial_seed, 0x5CA4])
    t = clean.iterations
    if cfg.fail_at is not None:
        fail_at = cfg.fail_at
    else:
        lo, hi = max(1, math.ceil(0.2 * t)), max(1, math.floor(0.8 * t))
        fail_at = int(rng.integers(lo, max(lo, hi) + 1))
    lost = sorted(int(s) for s in rng.choice(cfg.shards, size=cfg.n_lost, replace=False))
    return fail_at, lost


def run_cell(
    cfg: ExperimentConfig,
    store_factory: Callable[[int], CheckpointStore] | None = None,
    progress: Callable[[int, int], None] | None = None,
    replay: bool = True,
    flags: bool = False,
    first_trial: int = 0,
) -> dict[str, Any]:
    """Run one experiment cell; returns the result document (schema: docs/cli.md).
    ``replay=False`` recomputes every iteration of every trial (the results are identical:
    see :class:`Trajectory`). ``flags``: errors name the settings as command-line flags.
    ``first_trial``: number the trials from there (their seeds ``seed + first_trial + i``), to
    add trials to a cell run before (``extend_cell``)."""
    cfg.validate(flags)
    d = models.defaults(cfg.model, cfg.optimizer)
    epsilon = d.epsilon if cfg.epsilon is None else cfg.epsilon
    algo, clean = prepare(
        cfg.model,
        cfg.dataset,
        cfg.optimizer,
        tuple(sorted(cfg.hyper.items())),
        cfg.seed,
        epsilon,
        d.smooth,
    )
    if cfg.fail_at is not None and cfg.fail_at >= clean.iterations:
        check.fail(
            check.namer(flags)("fail_at"),
            f"below the clean run's {clean.iterations} iterations to the target",
            cfg.fail_at,
        )
    period = cfg.period if cfg.period is not None else max(2, round(clean.iterations / 10))
    cap = math.ceil(cfg.max_factor * clean.iterations)
    trials = []
    paired = not algo.deterministic
    for i in range(cfg.trials):
        trial_seed = cfg.seed + first_trial + i
        # a stochastic algorithm: the trial draws chain seed + 1 (chain 0 is the base run's)
        # and is measured against that chain's own clean run, from the same start
        base = chain_run(algo, clean, trial_seed + 1, d.smooth, cap) if paired else clean
        try:
            fail_at, lost = draw_failure(cfg, base, trial_seed)
            state = State(algo.start(), cfg.shards, cfg.sharding)
            policy = make_policy(cfg.checkpoint, period, cfg.policy_fraction, seed=trial_seed)
            store = store_factory(trial_seed) if store_factory else MemoryStore()
            ckpt = Checkpointer(state, policy, store, aux=algo.aux_state, follows=algo.follows())
            ckpt.save_all(0)
            executed, lag, censored, rec = run_with_event(
                algo,
                base,
                state,
                d.smooth,
                cap,
                fail_at,
                failure_event(algo, base, ckpt, lost, cfg.recovery),
                ckpt,
                replay=replay,
            )
            store.close()
        finally:
            algo.set_chain(0)
        trials.append(
            {
                "seed": trial_seed,
                "chain": base.chain,
                "fail_at": fail_at,
                "lost_shards": lost,
                "clean_iterations": base.iterations,
                "clean_censored": base.censored,
                "failed_iterations": executed,
                "clean_crossing": base.iterations - base.lag,
                "failed_crossing": executed - lag,
                "rework": rework(executed, lag, base),
                "rework_iterations": executed - base.iterations,
                "perturbation_norm": rec.get("perturbation_norm"),
                "bound": rec.get("bound"),
                "bytes_written": ckpt.value_bytes,
                "bytes_per_iteration": ckpt.value_bytes / executed,
                "stored_bytes": ckpt.stored_bytes,
                "checkpoints": ckpt.saves,
                "rows_restored": rec.get("rows_restored"),
                "rows_rebuilt": rec.get("rows_rebuilt"),
                "rebuild_seconds": rec.get("rebuild_seconds"),
                "censored": censored,
                "metrics": algo.metrics(state),
            }
        )
        if progress:
            progress(i + 1, cfg.trials)
    config = asdict(cfg)
    config.update(
        {
            "period": period,
            "fraction": cfg.policy_fraction,
            "epsilon": epsilon,
            "smoothing_window": d.smooth,
            "lost_shards": cfg.n_lost,
            "cap": cap,
            "policy": policy.describe(),
            "algorithm": algo.params(),
        }
    )
    return {
        "config": config,
        "clean": clean.summary(),
        "trials": trials,
        "summary": summarize(trials, paired),
    }


def extend_cell(doc: dict[str, Any], cfg: ExperimentConfig, more: int) -> dict[str, Any]:
    """``doc``, the result of ``cfg``'s cell, with ``more`` trials added: the next trial
    seeds, the same settings, the summary recomputed over every trial."""
    new = run_cell(replace(cfg, trials=more), first_trial=len(doc["trials"]))
    trials = doc["trials"] + new["trials"]
    paired = doc["summary"].get("estimator") == ESTIMATORS[True]
    return {**doc, "trials": trials, "summary": summarize(trials, paired)}


def summarize(trials: list[dict[str, Any]], paired: bool = False) -> dict[str, Any]:
    """Mean, std and 95 % confidence interval of the rework (censored trials included at
    their cap, counted in ``censored``); the estimator of T_clean, and with paired chains the
    spread of their clean runs' crossings."""
    r = np.array([t["rework"] for t in trials], dtype=np.float64)
    n = len(r)
    mean = float(r.mean()) if n else float("nan")
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    half = _t95(n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    norms = [t["perturbation_norm"] for t in trials if t["perturbation_norm"] is not None]
    return {
        "rework_mean": mean,
        "rework_std": std,
        "rework_ci95": [mean - half, mean + half],
        "trials": n,
        "censored": int(sum(t["censored"] for t in trials)),
        "perturbation_norm_mean": float(np.mean(norms)) if norms else None,
        "bytes_per_iteration_mean": float(np.mean([t["bytes_per_iteration"] for t in trials])),
        "estimator": ESTIMATORS[paired],
        **({"clean_chains": _chains(trials)} if paired else {}),
    }


def _chains(trials: list[dict[str, Any]]) -> dict[str, Any]:
    its = np.array([t["clean_crossing"] for t in trials], dtype=np.float64)
    return {
        "chains": len(its),
        "crossing_mean": float(its.mean()),
        "crossing_std": float(its.std(ddof=1)) if len(its) > 1 else 0.0,
        "censored": int(sum(t["clean_censored"] for t in trials)),
    }


def reduction_ci(
    traditional: list[dict[str, Any]], scar: list[dict[str, Any]], resamples: int = 4000
) -> list[float] | None:
    """95 % bootstrap interval of ``1 - mean(scar rework) / mean(traditional rework)`` over
    two cells' trials (fixed seed: the report is reproducible). Trials with the same seeds in
    both cells (the same chain, failure time and lost shards) are resampled together, as
    pairs; otherwise each cell's trials independently. None when the traditional trials cost
    nothing."""
    t = np.array([x["rework"] for x in traditional], float)
    s = np.array([x["rework"] for x in scar], float)
    if len(t) < 2 or len(s) < 2 or t.mean() <= 0:
        return None
    rng = np.random.default_rng(0x5CA4)
    ti = rng.integers(0, len(t), (resamples, len(t)))
    if [x["seed"] for x in traditional] == [x["seed"] for x in scar]:
        si = ti  # paired: one draw of trial indices for both
    else:
        si = rng.integers(0, len(s), (resamples, len(s)))
    tm, sm = t[ti].mean(axis=1), s[si].mean(axis=1)
    red = 1 - sm[tm > 0] / tm[tm > 0]
    return [float(np.percentile(red, 2.5)), float(np.percentile(red, 97.5))]


def _t95(dof: int) -> float:
    from scipy.stats import t  # scipy: heavy, imported only when a summary needs it

    return float(t.ppf(0.975, dof))
