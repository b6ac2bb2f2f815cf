"""The coordinator: drives BSP iterations over shard servers and workers, injects and detects
failures, replaces dead shards and restores their rows.

One iteration: every worker computes on the rows pulled after the previous iteration and pushes
per-shard updates; every shard applies them (and checkpoints when its policy is due); the
coordinator then pulls the new state (the next iteration's input and the objective). A shard
that dies (``NodeLost``: actor death or timeout) is replaced by a new shard server that
reopens the dead shard's store, then

* ``partial``: the replacement reads its rows back; the survivors and the counter carry on;
* ``full``: every shard rolls back to the newest iteration all shards committed, and the
  counter rewinds to it (the iterations after it are done again).

Worker-side state (LDA: topic assignments z, document-topic counts) lives in the workers. The
coordinator keeps a copy of it at every iteration the shards checkpoint (on Ray: object-store
references, so nothing is copied to the driver until a rollback needs it) and, after a
recovery, hands it to the split (``Split.after_restore``) with the restored rows: a full
rollback first reinstates the copy of the iteration rolled back to; then (partial or full) the
split makes the state consistent with the restored rows (LDA re-deals the tokens of the
restored words) and the workers receive the result. The coordinator also gathers the state for
the objective (LDA's joint likelihood needs the document-topic counts).

A dead worker ends the run with an error (workers hold data partitions; the runtime does not
re-deal them).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ScarError
from ..policies import make_policy
from ..recovery import REBUILD
from ..theory import perturbation_norm
from .config import TrainConfig
from .local import Cluster, Handle, NodeLost
from .nodes import CheckpointConfig, ShardServer, StandbyShard, WorkerNode
from .split import Layout, Split

KEEP_STATES = 6  # worker-state snapshots kept for full rollbacks (the stores keep 3 versions)


class RuntimeFailure(ScarError):
    """The run cannot go on (a worker died, recovery failed)."""


@dataclass
class Failure:
    iteration: int  # the iteration after which the shards were lost
    shards: list[int]
    detection_seconds: float  # kill (or the failing call) -> death noticed
    restore_seconds: float  # death noticed -> replacement serving restored rows
    rows_restored: int
    bytes_restored: int
    perturbation_norm: float | None
    resume_iteration: int  # partial: = iteration; full: the checkpoint rolled back to
    restored_from: list[int]  # per lost shard: the iteration of its newest committed save
    committed_before: list[int]  # per lost shard: newest save it had reported committed
    objective_after: float  # the objective of the recovered state
    rows_rebuilt: int = 0  # --recovery rebuild: of the rows restored, those recomputed


@dataclass
class WorkerFailure:
    iteration: int  # the last iteration done before the workers were found dead
    workers: list[int]
    detection_seconds: float  # kill (or the failing iteration's start) -> death noticed
    restore_seconds: float  # death noticed -> replacements started (and their state set)
    state_from: int | None  # the iteration of the worker state given back (stateful splits)


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """Within: the first Ctrl-C (SIGINT) sets the event - the run stops after the iteration in
    progress, closes its shards and reports - and a second one interrupts at once
    (KeyboardInterrupt). Only where Python's own handler is in place, in the main thread;
    elsewhere Ctrl-C does what it did (the event is never set)."""
    stop = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield stop
        return

    def first(signum, frame) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Trainer:
    def __init__(self, cfg: TrainConfig, split: Split, cluster: Cluster, store: str) -> None:
        self.cfg, self.split, self.cluster = cfg, split, cluster
        initial = split.initial_tables()
        self.layout = Layout(
            {n: a.shape for n, a in initial.items()},
            cfg.shards,
            cfg.sharding,
            {n: a.dtype for n, a in initial.items()},
        )
        self.ckpt = CheckpointConfig(
            cfg.checkpoint,
            cfg.period,
            cfg.fraction,
            cfg.seed,
            store,
            cfg.async_writes,
            cfg.fsync,
            background_priority=cfg.save_priority,
        )
        per_shard = self.layout.scatter(initial)
        # every node starts at once (on Ray each is a process: ~1 s apiece), then all are awaited
        self.shards = [self._launch_shard(k, per_shard[k]) for k in range(cfg.shards)]
        self.workers = [
            cluster.start("worker", w, WorkerNode, part, self.layout)
            for w, part in enumerate(split.parts(cfg.workers))
        ]
        try:
            self._started(self.shards + self.workers)
        except BaseException:  # one node did not start: the others must not outlive the run
            for h in self.shards + self.workers:
                cluster.discard(h)
            raise
        # a started shard process kept ready to replace a lost shard (``_replacement``)
        self.standby: Handle | None = self._start_standby()
        self.durable = [0] * cfg.shards
        self.iteration = 0
        self.steps = 0
        self.failures: list[Failure] = []
        self.worker_failures: list[WorkerFailure] = []
        self.checkpoint_seconds = 0.0
        self.checkpoint_bytes = 0
        self._lost_background_cpu = 0.0  # of shards killed (taken just before the kill)
        self._killed_at: float | None = None
        self._before: tuple[int, dict[str, np.ndarray]] | None = None
        # worker-side state at every iteration the shards checkpoint (futures; see _snapshot)
        self._due = make_policy(cfg.checkpoint, cfg.period, cfg.fraction).is_due
        self.checkpointing = True  # set_checkpointing(False) pauses the periodic saves
        self._snapshots: dict[int, list[Any]] = {}
        self._snapshot()
        # the full tables at an iteration, when pulled (``tables``)
        self._tables: tuple[int, dict[str, np.ndarray]] | None = None
        self.trajectory: list[tuple[int, float]] = [(0, self.objective())]

    # -- nodes ----------------------------------------------------------------------------
    def _started(self, handles: list[Handle]) -> None:
        """Wait until every node has started (its constructor has run); note their pids."""
        futures = [self.cluster.call(h, "pid") for h in handles]
        for h, f in zip(handles, futures, strict=True):
            h.meta["pid"] = self.cluster.get(h, f, self.cfg.timeout)

    def _launch_shard(self, k: int, rows: dict[str, np.ndarray] | None) -> Handle:
        return self.cluster.start(
            "shard", k, ShardServer, k, self.layout, self.split.rule, self.ckpt, rows
        )

    def _start_standby(self) -> Handle:
        """Start a shard process that waits to replace one (not awaited: it starts while the
        run goes on)."""
        return self.cluster.start("standby", 0, StandbyShard, self.layout, self.ckpt)

    def _replacement(self, k: int) -> Handle:
        """A new shard ``k`` with no rows yet: the standby, made shard ``k``, if it is alive,
        else a new process."""
        standby, self.standby = self.standby, None
        if standby is not None:
            h = Handle("shard", k, standby.actor)
            args = (k, self.layout, self.split.rule, self.ckpt, None)
            try:
                h.meta["pid"] = self.cluster.get(
                    h, self.cluster.call(h, "become", *args), self.cfg.timeout
                )
                return h
            except NodeLost:  # it died meanwhile: start one the usual way
                self.cluster.discard(standby)
            except BaseException:  # it could not become shard k (its store): nor would another
                self.cluster.discard(standby)
                raise
        return self._launch_shard(k, None)

    def _ask(self, handles: list[Handle], method: str, *args: Any) -> tuple[list[Any], list[int]]:
        """Call ``method`` on every node; (results, indices of the nodes found dead)."""
        return self._ask_each(handles, method, [args] * len(handles))

    def _ask_each(
        self, handles: list[Handle], method: str, args: list[Any]
    ) -> tuple[list[Any], list[int]]:
        """Call ``method`` on node i with argument(s) ``args[i]`` (a tuple, or one value)."""
        futures = [
            self.cluster.call(h, method, *(a if isinstance(a, tuple) else (a,)))
            for h, a in zip(handles, args, strict=True)
        ]
        out, lost = [], []
        for i, (h, f) in enumerate(zip(handles, futures, strict=True)):
            try:
                out.append(self.cluster.get(h, f, self.cfg.timeout))
            except NodeLost:
                out.append(None)
                lost.append(i)
        return out, lost

    def _alive(self, h: Handle) -> bool:
        try:
            self.cluster.get(h, self.cluster.call(h, "pid"), min(10.0, self.cfg.timeout))
            return True
        except NodeLost:
            return False

    # -- state ----------------------------------------------------------------------------
    def _read_all(self) -> dict[str, np.ndarray]:
        """Every row of every table from the shards (recovering lost shards first)."""
        while True:
            t0 = time.perf_counter()
            futures = [self.cluster.call(h, "pull") for h in self.shards]
            values, lost = [], []
            for k, (h, f) in enumerate(zip(self.shards, futures, strict=True)):
                try:
                    values.append(self.cluster.get(h, f, self.cfg.timeout))
                except NodeLost:
                    lost.append(k)
            if not lost:
                return self.layout.assemble(values)
            self._recover(lost, self._killed_at or t0)

    def refresh(self) -> dict[str, np.ndarray]:
        """Pull the state now (noticing and recovering dead shards); the full tables."""
        self._tables = None
        return self.tables

    @property
    def tables(self) -> dict[str, np.ndarray]:
        """The full tables at the current iteration, pulled from the shards when first asked
        for (the objective, a recovery): the iterations themselves move no table through the
        coordinator."""
        if self._tables is None or self._tables[0] != self.iteration:
            tables = self._read_all()  # (a recovery inside may rewind the iteration)
            self._tables = (self.iteration, tables)
        return self._tables[1]

    def objective(self) -> float:
        return float(self.split.objective(self.tables, self.worker_states()))

    # -- replacing workers -----------------------------------------------------------------
    def _replace_workers(self, dead: list[int], since: float) -> None:
        """Start a new worker for each of ``dead`` on the same data partition (the split
        cuts it again). A split whose workers hold state (LDA's topic assignments) gives each
        replacement its state as of the newest kept snapshot (the last checkpoint iteration),
        and the split corrects the tables to agree with it (``Split.after_worker_loss``). The
        iteration that failed runs again (``step``)."""
        detected = time.perf_counter()
        states = None
        if self.split.worker_state:
            if not self._snapshots:
                raise RuntimeFailure(
                    f"workers {dead} died at iteration {self.iteration + 1} and no state of "
                    "theirs is kept (no checkpoint iteration yet)"
                )
            at = max(self._snapshots)
            others = [i for i in range(len(self.workers)) if i not in dead]
            states = self.worker_states(self._snapshots[at], skip=others)
        parts = self.split.parts(len(self.workers))
        for i in dead:
            self.cluster.discard(self.workers[i])
            self.workers[i] = self.cluster.start("worker", i, WorkerNode, parts[i], self.layout)
        self._started([self.workers[i] for i in dead])
        state_from = None
        if states is not None:
            state_from = at
            alive = self.worker_states(skip=dead)
            for i in dead:
                alive[i] = states[i]
                w = self.workers[i]
                self.cluster.get(w, self.cluster.call(w, "set_state", states[i]), self.cfg.timeout)
            fix = self.split.after_worker_loss(self.tables, alive, dead)
            if fix:
                parts = self.layout.split(fix)
                _, lost = self._ask_each(self.shards, "adjust", parts)
                if lost:
                    raise RuntimeFailure(f"shards {lost} died while workers {dead} were replaced")
            self._tables = None
            self._snapshot_now()
        self.worker_failures.append(
            WorkerFailure(
                iteration=self.iteration,
                workers=dead,
                detection_seconds=detected - since,
                restore_seconds=time.perf_counter() - detected,
                state_from=state_from,
            )
        )

    # -- worker-side state (LDA's z and document-topic counts) ----------------------------
    def worker_states(
        self, futures: list[Any] | None = None, skip: list[int] = ()
    ) -> list[dict[str, np.ndarray]]:
        """Every worker's state (from ``futures``: a snapshot), in worker order; ``skip``:
        workers left as None (dead ones: they are not asked)."""
        if not self.split.worker_state:
            return []
        if futures is None:
            futures = [
                None if i in skip else self.cluster.call(w, "state")
                for i, w in enumerate(self.workers)
            ]
        out = []
        for i, (w, f) in enumerate(zip(self.workers, futures, strict=True)):
            if i in skip or f is None:
                out.append(None)
                continue
            try:
                out.append(self.cluster.get(w, f, self.cfg.timeout))
            except NodeLost:
                raise RuntimeFailure(
                    f"worker {w.index} died at iteration {self.iteration} while its state was "
                    "read; it is replaced when an iteration finds it dead"
                ) from None
        return out

    def _snapshot(self) -> None:
        """Keep the workers' state of this iteration (a checkpoint iteration of the shards) for
        a full rollback to it or a replaced worker: the coordinator holds it (as futures: on
        Ray the copies stay in the object store, and outlive the worker), the newest
        ``KEEP_STATES`` of them."""
        if not self.split.worker_state:
            return
        self._snapshot_now()

    def _snapshot_now(self) -> None:
        self._snapshots[self.iteration] = [self.cluster.call(w, "state") for w in self.workers]
        for it in sorted(self._snapshots)[:-KEEP_STATES]:
            del self._snapshots[it]

    def _reconcile(self, rows: dict[str, np.ndarray | None], at: int, target: int | None) -> None:
        """Make the workers' state agree with restored ``rows`` after a failure after
        iteration ``at``; a full rollback to ``target`` first reinstates that iteration's."""
        if not self.split.worker_state:
            return
        if target is None:
            states = self.worker_states()
        elif target in self._snapshots:
            states = self.worker_states(self._snapshots[target])
        else:
            raise RuntimeFailure(
                f"no worker state kept for the rollback to iteration {target}; "
                f"kept: {sorted(self._snapshots)}"
            )
        new = self.split.after_restore(self.tables, rows, states, at)
        for w, s in zip(self.workers, new if new is not None else states, strict=True):
            self.cluster.get(w, self.cluster.call(w, "set_state", s), self.cfg.timeout)

    # -- iterations -----------------------------------------------------------------------
    def _pulls(self, it: int, wargs: list[Any]) -> list[list[Any]]:
        """Per worker, futures of every shard's answer to its read for iteration ``it``.
        Sparse pulls: each worker names the rows its batch needs (``request``) and each shard
        answers with those rows; dense: one read of every row per shard, shared by the
        workers. The coordinator passes futures only: the rows go shard to worker."""
        S = len(self.shards)
        if not self.split.sparse_pulls:
            return [[self.cluster.call(h, "read", None) for h in self.shards]] * len(self.workers)
        pulls = []
        for i, w in enumerate(self.workers):
            req = self.cluster.call(w, "request", it, wargs[i], num_returns=S)
            req = req if S > 1 else [req]
            pulls.append([self.cluster.call(h, "read", req[k]) for k, h in enumerate(self.shards)])
        return pulls

    def step(self) -> None:
        """One iteration. Nodes found dead on the way are replaced (shards restored); when
        no shard could apply the iteration (a dead node's rows or updates were missing) it is
        left to run again: ``iteration`` does not move."""
        it = self.iteration + 1
        wargs = self.split.worker_args(it, len(self.workers))
        sargs = self.split.server_args(it)
        S = len(self.shards)
        t0 = time.perf_counter()
        pulls = self._pulls(it, wargs)
        outs = [
            self.cluster.call(w, "compute", it, wargs[i], *pulls[i], num_returns=S)
            for i, w in enumerate(self.workers)
        ]
        outs = [o if S > 1 else [o] for o in outs]
        for k, h in enumerate(self.shards):
            h.meta["apply"] = self.cluster.call(h, "apply", it, sargs, *[o[k] for o in outs])
        lost, ckpt = [], 0.0
        for k, h in enumerate(self.shards):
            try:
                stats = self.cluster.get(h, h.meta.pop("apply"), self.cfg.timeout)
            except NodeLost:
                lost.append(k)
                continue
            ckpt = max(ckpt, stats["checkpoint_seconds"])
            self.checkpoint_bytes += stats["saved_bytes"]
            self.durable[k] = stats["durable"]
        self.checkpoint_seconds += ckpt
        applied = len(lost) < S
        if applied:
            self.iteration, self.steps = it, self.steps + 1
            if self.checkpointing and self._due(it):
                self._snapshot()
        if lost:
            self._replace_dead(lost, t0)
            if not applied:
                return
        if self.iteration % self.cfg.eval_every == 0 or self.iteration >= self.cfg.iterations:
            self.trajectory.append((self.iteration, self.objective()))

    def _replace_dead(self, lost: list[int], since: float) -> None:
        """After shards ``lost`` failed an iteration: replace the dead workers, then recover
        the dead shards (a shard whose apply failed only for want of a dead node's input is
        alive and carries on)."""
        workers = [i for i, w in enumerate(self.workers) if not self._alive(w)]
        dead = [k for k in lost if not self._alive(self.shards[k])]
        if not dead and not workers:
            raise RuntimeFailure(
                f"shards {lost} failed iteration {self.iteration + 1} but every node is alive"
            )
        if workers:
            self._replace_workers(workers, self._killed_at or since)
        if dead:
            self._recover(dead, self._killed_at or since)
        self._killed_at = None

    def set_checkpointing(self, on: bool) -> None:
        """Pause (False) or resume (True) every shard's periodic saves (and the workers' state
        kept for full rollbacks), e.g. to compare a run's iterations with and without them on
        the same processes (benchmarks/ray_overhead.py). While paused nothing new becomes
        durable: a failure restores the last save before the pause. A shard found dead here
        is replaced by the next ``step``, and its replacement told."""
        self.checkpointing = bool(on)
        self._ask(self.shards, "set_checkpointing", self.checkpointing)

    def kill(self, shards: list[int]) -> None:
        """Kill shard nodes for real (SIGKILL on Ray); the next call notices. Their background
        checkpoint CPU so far is asked for first, so that the run's total keeps it."""
        self._lost_background_cpu += self._background_cpu([self.shards[k] for k in shards])
        self._before = (self.iteration, self.tables)
        self._killed_at = time.perf_counter()
        for k in shards:
            self.cluster.kill(self.shards[k])
        self._tables = None  # (taken above: the state the kill perturbs)

    def kill_workers(self, workers: list[int]) -> None:
        """Kill worker nodes for real; the next iteration finds them dead and replaces them."""
        self._killed_at = time.perf_counter()
        for i in workers:
            self.cluster.kill(self.workers[i])

    def _recover(self, lost: list[int], since: float) -> None:
        detected = time.perf_counter()
        at = self.iteration
        before = self._before
        if before is None or before[0] != at:  # a death not injected: the state if pulled
            before = self._tables
        before_tables = before[1] if before is not None and before[0] == at else None
        self._before, self._killed_at = None, None
        committed = [self.durable[k] for k in lost]
        for k in lost:
            self.cluster.discard(self.shards[k])
            self.shards[k] = self._replacement(k)
        # the replacements start side by side
        self._started([self.shards[k] for k in lost if "pid" not in self.shards[k].meta])
        if not self.checkpointing:
            self._ask([self.shards[k] for k in lost], "set_checkpointing", False)
        target = None
        if self.cfg.recovery in ("partial", REBUILD):
            stats, dead = self._ask([self.shards[k] for k in lost], "restore")
            restored_from = [s["iteration"] for s in stats if s is not None]
            for k, it in zip(lost, restored_from, strict=False):
                self.durable[k] = it
        else:
            latest, dead = self._ask(self.shards, "latest_iteration")
            if not dead:
                target = min(latest)
                stats, dead = self._ask(self.shards, "rollback", target)
                restored_from = [target] * len(lost)
                self.iteration, self.durable = target, [target] * len(self.shards)
        if dead:
            raise RuntimeFailure(f"shards died again while recovering from the loss of {lost}")
        self._tables = None
        rows = {
            n: np.sort(np.concatenate([self.layout.rows(k)[n] for k in lost]))
            if target is None
            else None
            for n in self.layout.shapes
        }
        rebuilt = 0
        if self.cfg.recovery == REBUILD:
            rebuilt = self._rebuild(rows, lost)
        else:
            self._reconcile(rows, at, target)
        restored = time.perf_counter()
        if self.standby is None:  # for the next failure, while the run goes on
            self.standby = self._start_standby()
        norm = None if before_tables is None else perturbation_norm(before_tables, self.tables)
        self.failures.append(
            Failure(
                iteration=at,
                shards=sorted(lost),
                detection_seconds=detected - since,
                restore_seconds=restored - detected,
                rows_restored=sum(s["rows"] for s in stats),
                bytes_restored=sum(s["bytes"] for s in stats),
                perturbation_norm=norm,
                resume_iteration=self.iteration,
                restored_from=restored_from,
                committed_before=committed,
                objective_after=self.objective(),
                rows_rebuilt=rebuilt,
            )
        )

    def _rebuild(self, rows: dict[str, np.ndarray], lost: list[int]) -> int:
        """Recovery by recomputation: the lost rows the rest of the state determines are
        recomputed by the split and set on the replacement shards; the rows rebuilt."""
        fix = self.split.rebuild(self.tables, rows, self.worker_states(), self.iteration)
        if not fix:
            return 0
        parts = self.layout.split(fix)
        _, dead = self._ask_each([self.shards[k] for k in lost], "adjust", [parts[k] for k in lost])
        if dead:
            raise RuntimeFailure(f"shards {lost} died again while their rows were rebuilt")
        self._tables = None
        return sum(0 if u.rows is None else len(u.rows) for u in fix.values())

    def close(self, dead_ok: bool = False) -> list[int]:
        """Wait for every checkpoint to be durable; the newest committed iteration per shard.
        ``dead_ok``: a dead shard (a run interrupted between a kill and its recovery) counts
        with the newest iteration it had reported committed, instead of being an error."""
        if self.standby is not None:
            self.cluster.discard(self.standby)
            self.standby = None
        out, dead = self._ask(self.shards, "close")
        if dead and not dead_ok:
            raise RuntimeFailure(f"shards {dead} died while closing")
        return [self.durable[k] if c is None else c for k, c in enumerate(out)]

    # -- a whole run ----------------------------------------------------------------------
    def run(self, progress=None) -> dict[str, Any]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 0x4B11])
        killed: set[int] = set()
        wrng = np.random.default_rng([cfg.seed, 0x3017])  # which worker: its own stream
        killed_workers: set[int] = set()
        t0 = time.perf_counter()
        with _stop_on_ctrl_c() as stop:
            while self.iteration < cfg.iterations and not stop.is_set():
                self.step()
                it = self.iteration
                due = (cfg.kill_at == it) or (
                    cfg.kill_every is not None and it % cfg.kill_every == 0
                )
                if due and it not in killed and it < cfg.iterations:
                    killed.add(it)
                    n = cfg.kill_shards if cfg.kill_at is not None else 1
                    self.kill(sorted(rng.choice(cfg.shards, size=n, replace=False).tolist()))
                every = cfg.kill_workers
                if every and it % every == 0 and it not in killed_workers and it < cfg.iterations:
                    killed_workers.add(it)
                    self.kill_workers([int(wrng.integers(len(self.workers)))])
                if progress is not None:
                    progress(it, cfg.iterations)
            interrupted = self.iteration < cfg.iterations
            at = self.iteration
            if interrupted and self._killed_at is None and self.trajectory[-1][0] != at:
                self.trajectory.append((at, self.objective()))  # where it stopped
            # a dead shard is one killed just before the stop, never recovered
            committed = self.close(dead_ok=interrupted)
        wall = time.perf_counter() - t0
        cpu = self._lost_background_cpu + self._background_cpu(self.shards)
        return self.result(wall, committed, cpu, interrupted)

    def _background_cpu(self, handles: list[Handle]) -> float:
        """CPU seconds of these shards' background checkpoint work so far: their save threads'
        and store writers' (0 with synchronous writes, whose work is in
        ``checkpoint_seconds``)."""
        stats, _ = self._ask(handles, "stats")
        return sum(
            st["save_thread_cpu_seconds"] + st["store_writer_cpu_seconds"]
            for st in stats
            if st is not None
        )

    def result(
        self,
        wall: float,
        committed: list[int],
        background_cpu_seconds: float = 0.0,
        interrupted: bool = False,
    ) -> dict[str, Any]:
        its, objs = zip(*self.trajectory, strict=True)
        return {
            "config": asdict(self.cfg),
            "interrupted": interrupted,  # stopped by Ctrl-C before cfg.iterations
            "objective": list(objs),
            "iterations": list(its),
            "objective_final": objs[-1],
            "failures": [asdict(f) for f in self.failures],
            "worker_failures": [asdict(f) for f in self.worker_failures],
            "totals": {
                "iterations": self.iteration,
                "steps": self.steps,
                "failures": len(self.failures),
                "worker_failures": len(self.worker_failures),
                "wall_seconds": wall,
                "checkpoint_seconds": self.checkpoint_seconds,
                "checkpoint_bytes": self.checkpoint_bytes,
                "background_checkpoint_cpu_seconds": background_cpu_seconds,
                "recovery_seconds": sum(
                    f.detection_seconds + f.restore_seconds for f in self.failures
                ),
                "committed_iteration": min(committed),
            },
        }
