"""The clean run of a cell: the undisturbed training that fixes the target ``f* + eps * (f(0) -
f*)`` and the number of iterations ``T_clean`` its (smoothed) objective needs to reach it, the
contraction estimate where it is defined, and the recorded trajectory that trials replay."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .. import theory
from ..algorithms import registry as models
from ..algorithms.base import Algorithm
from ..errors import ConfigError
from ..state import State


class Trajectory:
    """The undisturbed run, remembered: the tables and worker-side arrays after each iteration
    ``k = 0, 1, ...`` of the clean run.

    Every algorithm here is a deterministic function of (state, iteration) - randomness is keyed
    by the iteration - so a trial retraces the clean run exactly until its failure. Replaying
    these states (a copy instead of an iteration's compute) gives bit-identical trials in half
    the time (the failure falls in [0.2, 0.8] * T_clean). Recording stops at ``budget`` bytes;
    iterations past the recorded prefix are computed.
    """

    def __init__(self, budget: int = 256 << 20) -> None:
        self.budget = budget
        self.used = 0
        self.tables: list[dict[str, np.ndarray]] = []
        self.aux: list[dict[str, np.ndarray]] = []
        self.full = False

    def __len__(self) -> int:
        return len(self.tables)

    def record(self, tables: Mapping[str, np.ndarray], aux: Mapping[str, np.ndarray]) -> None:
        """Append the state after the next iteration (the first call: the start)."""
        if self.full:
            return
        size = sum(t.nbytes for t in tables.values()) + sum(a.nbytes for a in aux.values())
        if self.used + size > self.budget:
            self.full = True
            return
        self.used += size
        self.tables.append({n: np.array(t, copy=True) for n, t in tables.items()})
        self.aux.append({n: np.array(a, copy=True) for n, a in aux.items()})

    def truncate(self, n: int) -> None:
        """Keep iterations 0 .. n - 1 (a trial never replays past its failure)."""
        del self.tables[n:], self.aux[n:]
        self.full = True

    def replay(self, algo: Algorithm, state: State, iteration: int) -> bool:
        """Put ``state`` and the algorithm's worker state where the clean run was after
        ``iteration``; False when that iteration was not recorded."""
        if iteration >= len(self.tables):
            return False
        state.assign(self.tables[iteration])
        algo.skip_to(iteration, self.aux[iteration])
        return True


def crossing_lag(before: float, after: float, target: float) -> float:
    """How far before iteration ``k`` a (smoothed) objective that was ``before`` after ``k - 1``
    iterations and is ``after`` <= ``target`` after ``k`` reached the target, interpolated
    linearly between the two: a number in [0, 1). Rework measured with it is not rounded to
    whole iterations (a run that reaches the target a third of an iteration later costs 0.33);
    two runs with the same last two values have the same lag, so their difference stays whole."""
    if not before > target:  # (reached already before: no segment to interpolate on)
        return 0.0
    return 1.0 - (before - target) / (before - after)


class MovingAverage:
    """Mean of the last ``window`` objective values, in the order iterations were executed."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=max(1, window))

    def __call__(self, value: float) -> float:
        self.values.append(value)
        return sum(self.values) / len(self.values)


@dataclass
class CleanRun:
    f0: float
    fstar: float
    target: float
    iterations: int  # T_clean: the first iteration whose smoothed objective reaches the target
    objectives: list[float]  # f(x(k)), k = 0 .. T_clean
    contraction: float | None  # c, for deterministic algorithms with a known optimum
    optimum: dict[str, np.ndarray] | None
    final: dict[str, np.ndarray] | None = None  # the state where the clean run stopped
    metrics: dict[str, float] = field(default_factory=dict)  # algo.metrics at T_clean
    long_run: dict[str, Any] | None = None  # no known optimum: the run that gave f*
    trajectory: Trajectory | None = field(default=None, repr=False)  # for replaying trials
    lag: float = 0.0  # the target was reached ``lag`` before T_clean (``crossing_lag``)
    chain: int = 0  # the algorithm's chain this run drew (``Algorithm.chain``)
    censored: bool = False  # a chain's run that did not reach the target by its cap
    # clean runs of other chains from this one's start (``chain_run``'s cache)
    chains: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "f0": self.f0,
            "fstar": self.fstar,
            "target": self.target,
            "clean_iterations": self.iterations,
            "clean_crossing": self.iterations - self.lag,
            "contraction": self.contraction,
            "metrics": self.metrics,
            "long_run": self.long_run,
        }


def clean_run(
    algo: Algorithm,
    epsilon: float,
    smooth: int,
    max_iterations: int = 20000,
    long_run: int = 0,
) -> CleanRun:
    """Train without failures: find the target and T_clean; estimate c where defined.
    Without a known optimum, f* comes from a clean run of ``long_run`` iterations."""
    tables = algo.start()
    f0 = algo.objective(tables)
    optimum = algo.optimum()
    if optimum is None:
        return _clean_run_long(algo, tables, f0, epsilon, smooth, long_run)
    fstar = algo.objective(optimum)
    target = fstar + epsilon * (f0 - fstar)
    ma = MovingAverage(smooth)
    objectives = [f0]
    distances = [theory.perturbation_norm(tables, optimum)]
    trajectory = Trajectory()
    trajectory.record(tables, algo.aux_state())
    reached = None
    horizon = max_iterations
    k, smoothed = 0, f0
    while k < horizon:
        k += 1
        algo.step(tables, k)
        f = algo.objective(tables)
        if reached is None:
            objectives.append(f)
            trajectory.record(tables, algo.aux_state())
            before, smoothed = smoothed, ma(f)
            if smoothed <= target:
                reached = k
                horizon = k
                lag = crossing_lag(before, smoothed, target)
        if algo.deterministic:
            distances.append(theory.perturbation_norm(tables, optimum))
    if reached is None:
        raise ConfigError(
            f"the clean run did not reach its target within {max_iterations} iterations; "
            "use a larger epsilon or a larger learning rate"
        )
    c = None
    if algo.deterministic:
        # The slowest of: the run's own one-step ratios, and the iteration map's contraction
        # around the optimum in every direction (perturbations need not follow the run).
        c = theory.estimate_contraction(distances)
        if c is not None:
            local = algo.contraction_at_optimum()
            if local is None:
                local = theory.local_contraction(lambda tables: algo.step(tables, 1), optimum)
            c = max(c, local) if local < 1 else None
    trajectory.truncate(reached)
    return CleanRun(
        f0,
        fstar,
        target,
        reached,
        objectives,
        c,
        optimum,
        final={n: t.copy() for n, t in tables.items()},
        trajectory=trajectory,
        lag=lag,
    )


def _clean_run_long(
    algo: Algorithm, tables: dict[str, np.ndarray], f0: float, epsilon: float, smooth: int, n: int
) -> CleanRun:
    """No known optimum (SPEC section 2): ``f*`` is the lowest smoothed objective of a clean run
    of ``n`` iterations (a per-model default; a deterministic algorithm stops early once an
    iteration changes its objective by less than 1e-13 relative), and T_clean the first
    iteration whose smoothed objective reaches ``f* + eps (f(0) - f*)``. The run is replayed to
    T_clean (it is deterministic) to record the algorithm's metrics there."""
    if n < 1:
        raise ConfigError(f"model {algo.name} has no known optimum and no long-run length")
    ma = MovingAverage(smooth)
    objectives, smoothed = [f0], []
    trajectory = Trajectory()
    trajectory.record(tables, algo.aux_state())
    for k in range(1, n + 1):
        algo.step(tables, k)
        objectives.append(algo.objective(tables))
        trajectory.record(tables, algo.aux_state())
        smoothed.append(ma(objectives[-1]))
        if algo.deterministic and abs(objectives[-2] - objectives[-1]) <= 1e-13 * abs(
            objectives[-1]
        ):
            break
    final = {name: t.copy() for name, t in tables.items()}
    long_run = {"iterations": k, "cap": n, "metrics": algo.metrics(tables)}
    fstar = min(smoothed)
    target = fstar + epsilon * (f0 - fstar)
    reached = next(k for k, f in enumerate(smoothed, 1) if f <= target)
    lag = crossing_lag(([f0, *smoothed])[reached - 1], smoothed[reached - 1], target)
    trajectory.truncate(reached)
    metrics = {}
    if long_run["metrics"]:
        tables = algo.start()
        for k in range(1, reached + 1):
            algo.step(tables, k)
        metrics = algo.metrics(tables)
    return CleanRun(
        f0,
        fstar,
        target,
        reached,
        objectives[: reached + 1],
        None,
        None,
        final,
        metrics,
        long_run,
        trajectory,
        lag,
    )


CHAINS_KEPT = 12  # clean runs of other chains kept per base run (each up to its trajectory)


def chain_run(algo: Algorithm, base: CleanRun, chain: int, smooth: int, cap: int) -> CleanRun:
    """The clean run of ``chain`` (see ``_chain_run``), computed once per base run for the
    ``CHAINS_KEPT`` chains used last: the cells of one model and data set in a process (the
    suite runs them in the same worker) pair trial i with the same chain. The algorithm is left
    on ``chain`` either way."""
    key = (chain, smooth, cap)
    kept = base.chains
    if key in kept:
        kept.move_to_end(key)
        algo.set_chain(chain)
        return kept[key]
    run = _chain_run(algo, base, chain, smooth, cap)
    kept[key] = run
    while len(kept) > CHAINS_KEPT:
        kept.popitem(last=False)
    return run


def _chain_run(algo: Algorithm, base: CleanRun, chain: int, smooth: int, cap: int) -> CleanRun:
    """The clean run of another chain of a stochastic algorithm (its per-iteration randomness
    drawn from ``chain``; the algorithm is left on that chain): from the same start, to the
    base run's target. Its own T_clean, lag, objectives and trajectory (trials of this chain
    replay it), with the base run's f0, f* and target. A run that does not reach the target
    in ``cap`` iterations is censored there."""
    algo.set_chain(chain)
    tables = algo.start()
    ma = MovingAverage(smooth)
    objectives, trajectory = [base.f0], Trajectory()
    trajectory.record(tables, algo.aux_state())
    smoothed, lag, reached = base.f0, 0.0, None
    for k in range(1, cap + 1):
        algo.step(tables, k)
        objectives.append(algo.objective(tables))
        trajectory.record(tables, algo.aux_state())
        before, smoothed = smoothed, ma(objectives[-1])
        if smoothed <= base.target:
            reached, lag = k, crossing_lag(before, smoothed, base.target)
            break
    trajectory.truncate(reached or cap)
    return CleanRun(
        base.f0,
        base.fstar,
        base.target,
        reached or cap,
        objectives,
        None,
        base.optimum,
        trajectory=trajectory,
        lag=lag,
        chain=chain,
        censored=reached is None,
    )


@lru_cache(maxsize=8)
def prepare(
    model: str,
    dataset: str,
    optimizer: str,
    hyper: tuple[tuple[str, Any], ...],
    seed: int,
    epsilon: float,
    smooth: int,
) -> tuple[Algorithm, CleanRun]:
    """The algorithm and its clean run; cached, since every cell of a sweep on one model
    shares them (both are deterministic functions of these arguments)."""
    algo = models.build(model, dataset, optimizer, dict(hyper), seed=seed)
    long_run = models.defaults(model, optimizer).long_run
    return algo, clean_run(algo, epsilon, smooth, long_run=long_run)
