"""One experiment cell: a clean run, then N trials of failure + recovery, measuring rework.

Measured cost (SPEC section 2): the clean run fixes the target ``f* + eps * (f(0) - f*)`` and the
number of iterations ``T_clean`` its (smoothed) objective needs to reach it. Each trial trains the
same algorithm from the same start with checkpointing on, loses shards after iteration
``fail_at`` (after that iteration's checkpoint, if one was due), recovers, and counts every
iteration it executes - re-done ones included - until the target: ``rework = T_failed - T_clean``.
Runs are capped at ``max_factor * T_clean`` iterations; a capped trial is *censored* and kept.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .. import theory
from ..algorithms import registry as models
from ..algorithms.base import Algorithm
from ..checkpoint import Checkpointer
from ..errors import ConfigError
from ..policies import POLICIES, make_policy
from ..recovery import RECOVERY_MODES
from ..state import SHARDING_SCHEMES, State
from ..store.base import CheckpointStore
from ..store.memory import MemoryStore

DEFAULT_FRACTION = 1 / 8


@dataclass
class ExperimentConfig:
    model: str = "mlr"
    dataset: str = "digits"
    optimizer: str = "gd"
    shards: int = 8
    lost_shards: int | None = None
    lost_fraction: float | None = None
    checkpoint: str = "priority"
    period: int | None = None  # None: max(2, round(T_clean / 10))
    fraction: float | None = None  # partial policies; None: 1/8
    recovery: str = "partial"
    fail_at: int | None = None  # None: uniform in [0.2, 0.8] * T_clean, per trial
    trials: int = 10
    seed: int = 0
    epsilon: float | None = None  # None: the model's default
    max_factor: float = 3.0
    sharding: str = "range"
    hyper: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> ExperimentConfig:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        models.check_combination(self.model, self.dataset, self.optimizer)
        _whole(self.shards, "shards", 1)
        if (self.lost_shards is None) == (self.lost_fraction is None):
            raise ConfigError("give exactly one of lost-shards K or lost-fraction P")
        if self.lost_shards is not None:
            _whole(self.lost_shards, "lost-shards", 1)
            if self.lost_shards > self.shards:
                raise ConfigError(
                    f"lost-shards must be between 1 and shards ({self.shards}), got {self.lost_shards}"
                )
        else:
            _fraction(self.lost_fraction, "lost-fraction")
            if round(self.lost_fraction * self.shards) < 1:
                raise ConfigError(
                    f"lost-fraction {self.lost_fraction:g} of {self.shards} shards loses no shard; "
                    f"use at least {1 / self.shards:g}"
                )
        if self.checkpoint not in POLICIES:
            raise ConfigError(
                f"unknown checkpoint policy {self.checkpoint!r}; allowed: {', '.join(POLICIES)}"
            )
        if self.period is not None:
            _whole(self.period, "period", 1)
        if self.fraction is not None:
            _fraction(self.fraction, "fraction")
        if self.recovery not in RECOVERY_MODES:
            raise ConfigError(
                f"unknown recovery {self.recovery!r}; allowed: {', '.join(RECOVERY_MODES)}"
            )
        if self.fail_at is not None:
            _whole(self.fail_at, "fail-at", 1)
        _whole(self.trials, "trials", 1)
        _whole(self.seed, "seed", 0)
        if self.epsilon is not None and not 0 < self.epsilon < 1:
            raise ConfigError(f"epsilon must be in (0, 1), got {self.epsilon:g}")
        if not self.max_factor > 1:
            raise ConfigError(f"max-factor must be > 1, got {self.max_factor:g}")
        if self.sharding not in SHARDING_SCHEMES:
            raise ConfigError(
                f"unknown sharding {self.sharding!r}; allowed: {', '.join(SHARDING_SCHEMES)}"
            )
        return self

    @property
    def n_lost(self) -> int:
        if self.lost_shards is not None:
            return self.lost_shards
        return max(1, round(self.lost_fraction * self.shards))

    @property
    def policy_fraction(self) -> float | None:
        if self.checkpoint == "full":
            return None
        return DEFAULT_FRACTION if self.fraction is None else self.fraction


def _whole(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")


def _fraction(value: Any, name: str) -> None:
    if not isinstance(value, float | int) or math.isnan(value) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")


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
    iterations: int  # T_clean
    objectives: list[float]  # f(x(k)), k = 0 .. T_clean
    contraction: float | None  # c, for deterministic algorithms with a known optimum
    optimum: dict[str, np.ndarray] | None
    final: dict[str, np.ndarray] | None = None  # the state where the clean run stopped
    metrics: dict[str, float] = field(default_factory=dict)  # algo.metrics at T_clean
    long_run: dict[str, Any] | None = None  # no known optimum: the run that gave f*
    trajectory: Trajectory | None = field(default=None, repr=False)  # for replaying trials

    def summary(self) -> dict[str, Any]:
        return {
            "f0": self.f0,
            "fstar": self.fstar,
            "target": self.target,
            "clean_iterations": self.iterations,
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
    k = 0
    while k < horizon:
        k += 1
        algo.step(tables, k)
        f = algo.objective(tables)
        if reached is None:
            objectives.append(f)
            trajectory.record(tables, algo.aux_state())
            if ma(f) <= target:
                reached = k
                horizon = k
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
) -> tuple[int, bool, dict[str, Any]]:
    """Train from ``state`` (which is at iteration ``start``) until the target, applying
    ``event`` after iteration ``event_at`` (``event_at == start``: before the first step).
    Returns (iterations executed since 0, censored, the event's record).

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
        if ma(f) <= clean.target:
            return executed, False, record
    return cap, True, record


def failure_event(
    algo: Algorithm, clean: CleanRun, ckpt: Checkpointer, lost: list[int], mode: str
) -> Event:
    """Lose ``lost`` shards, then recover with ``mode``; record the perturbation and bound."""

    def event(state: State, it: int) -> tuple[int | None, dict[str, Any]]:
        before = state.copy()
        ckpt.fail(lost)
        rec = ckpt.recover(lost, mode)
        restored = state.rows_of(lost) if mode == "partial" else dict.fromkeys(state)
        if mode == "full":
            algo.set_aux_state(rec.aux)
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
) -> dict[str, Any]:
    """Run one experiment cell; returns the result document (schema: docs/cli.md).
    ``replay=False`` recomputes every iteration of every trial (the results are identical:
    see :class:`Trajectory`)."""
    cfg.validate()
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
        raise ConfigError(
            f"fail-at must be below the clean run's {clean.iterations} iterations to the target, "
            f"got {cfg.fail_at}"
        )
    period = cfg.period if cfg.period is not None else max(2, round(clean.iterations / 10))
    cap = math.ceil(cfg.max_factor * clean.iterations)
    trials = []
    for i in range(cfg.trials):
        trial_seed = cfg.seed + i
        fail_at, lost = draw_failure(cfg, clean, trial_seed)
        state = State(algo.start(), cfg.shards, cfg.sharding)
        policy = make_policy(cfg.checkpoint, period, cfg.policy_fraction, seed=trial_seed)
        store = store_factory(trial_seed) if store_factory else MemoryStore()
        ckpt = Checkpointer(state, policy, store, aux=algo.aux_state)
        ckpt.save_all(0)
        executed, censored, rec = run_with_event(
            algo,
            clean,
            state,
            d.smooth,
            cap,
            fail_at,
            failure_event(algo, clean, ckpt, lost, cfg.recovery),
            ckpt,
            replay=replay,
        )
        store.close()
        trials.append(
            {
                "seed": trial_seed,
                "fail_at": fail_at,
                "lost_shards": lost,
                "clean_iterations": clean.iterations,
                "failed_iterations": executed,
                "rework": executed - clean.iterations,
                "perturbation_norm": rec.get("perturbation_norm"),
                "bound": rec.get("bound"),
                "bytes_written": ckpt.value_bytes,
                "bytes_per_iteration": ckpt.value_bytes / executed,
                "stored_bytes": ckpt.stored_bytes,
                "checkpoints": ckpt.saves,
                "rows_restored": rec.get("rows_restored"),
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
        "summary": summarize(trials),
    }


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and 95 % confidence interval of the rework (censored trials included at
    their cap, counted in ``censored``)."""
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
    }


def _t95(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))
