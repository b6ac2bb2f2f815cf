"""Perturbations of controlled size, for the bound illustration (SPEC section 4, experiment 1).

Three kinds of perturbation are injected after iteration ``T`` of an otherwise clean run:

* ``random``: a random direction, scaled to ``rel * ||x(T) - x*||``;
* ``adversarial``: straight away from the optimum, same scale;
* ``reset``: the rows of ``k`` random shards go back to their values ``age`` iterations earlier
  (what a failure plus a partial restore of a checkpoint of that age does), after which the
  algorithm makes its worker-side state consistent again (``after_restore``).

``random`` and ``adversarial`` need a continuous state and a reference point (the optimum, or
the end of a long clean run when the optimum is unknown); ``reset`` works for every model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import theory
from ..algorithms.base import Algorithm
from ..state import State
from .cell import Event, rework, run_with_event
from .clean import CleanRun

KINDS = ("random", "adversarial", "reset")


def _direction(kind: str, state: State, ref: dict[str, np.ndarray], seed: int) -> dict:
    if kind == "random":
        rng = np.random.default_rng(seed)
        d = {n: rng.standard_normal(t.shape) for n, t in state.items()}
    else:
        d = {n: t.astype(np.float64) - ref[n] for n, t in state.items()}
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in d.values()))
    return {n: v / norm for n, v in d.items()}


def scaled_event(
    algo: Algorithm, kind: str, rel: float, ref: dict[str, np.ndarray], seed: int, c: float | None
) -> Event:
    """Add ``rel * ||x(T) - ref||`` along a random or adversarial direction."""

    def event(state: State, it: int):
        dist = theory.perturbation_norm(state, ref)
        before = state.copy()
        for name, v in _direction(kind, state, ref, seed).items():
            state[name] += (rel * dist * v).astype(state[name].dtype)
        algo.after_restore(state, dict.fromkeys(state))
        norm = theory.perturbation_norm(before, state)
        return None, {"norm": norm, "distance": dist, "bound": theory.rework_bound(c, norm, dist)}

    return event


def reset_event(
    algo: Algorithm,
    old: dict[str, np.ndarray],
    lost: list[int],
    ref: dict[str, np.ndarray] | None,
    c: float | None,
) -> Event:
    """Reset the rows of shards ``lost`` to their values in ``old``."""

    def event(state: State, it: int):
        before = state.copy()
        rows = state.rows_of(lost)
        for name, ids in rows.items():
            state[name][ids] = old[name][ids]
        algo.after_restore(state, rows)
        norm = theory.perturbation_norm(before, state)
        dist = theory.perturbation_norm(before, ref) if ref is not None else None
        bound = theory.rework_bound(c, norm, dist) if dist else None
        return None, {"norm": norm, "distance": dist, "bound": bound}

    return event


def sweep(
    algo: Algorithm,
    clean: CleanRun,
    smooth: int,
    shards: int,
    kinds: Iterable[str],
    times: Iterable[int],
    sizes: Iterable[float] = (),
    ages: Iterable[int] = (),
    lost: Iterable[int] = (),
    cap_factor: float = 10.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rework of every perturbation: for each failure time in ``times``, the scaled kinds at
    every relative size in ``sizes``, and ``reset`` of every number of shards in ``lost`` to
    every age in ``ages``."""
    ref = clean.optimum if clean.optimum is not None else clean.final
    cap = int(cap_factor * clean.iterations)
    sizes, ages, kinds, lost = list(sizes), list(ages), list(kinds), list(lost)
    points = []
    for at in times:
        # the clean trajectory up to ``at``, keeping the states ``age`` iterations before it
        history: dict[int, dict[str, np.ndarray]] = {}
        tables = State(algo.start(), shards)
        keep = {at - a for a in ages if at - a >= 0}
        if 0 in keep:
            history[0] = tables.copy()
        for k in range(1, at + 1):
            algo.step(tables, k)
            if k in keep:
                history[k] = tables.copy()
        snapshot = tables.copy()
        aux = algo.aux_state()
        for kind in kinds:
            if kind == "reset":
                variants = [
                    (a, k) for a in ages if at - a in history for k in lost if 1 <= k <= shards
                ]
            else:
                variants = [(None, float(s)) for s in sizes]
            for i, (age, size) in enumerate(variants):
                state = State({n: v.copy() for n, v in snapshot.items()}, shards)
                algo.set_aux_state({n: v.copy() for n, v in aux.items()})
                rng_seed = seed * 1_000_003 + at * 1009 + i
                if kind == "reset":
                    shard_ids = np.random.default_rng(rng_seed).choice(shards, size, replace=False)
                    event = reset_event(
                        algo,
                        history[at - age],
                        sorted(int(s) for s in shard_ids),
                        ref,
                        clean.contraction,
                    )
                else:
                    event = scaled_event(algo, kind, size, ref, rng_seed, clean.contraction)
                executed, lag, censored, rec = run_with_event(
                    algo, clean, state, smooth, cap, at, event, start=at
                )
                points.append(
                    {
                        "kind": kind,
                        "at": at,
                        "size": size,
                        "age": age,
                        "perturbation_norm": rec["norm"],
                        "distance": rec["distance"],
                        "bound": rec["bound"],
                        "rework": rework(executed, lag, clean),
                        "rework_iterations": executed - clean.iterations,
                        "censored": censored,
                    }
                )
    return points
