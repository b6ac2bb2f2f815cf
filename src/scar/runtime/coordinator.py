"""The coordinator: drives BSP iterations over shard servers and workers, injects and detects
failures, replaces dead nodes and restores their rows.

One iteration: each worker reads the rows it needs straight from the shards (sparse pulls:
the rows its batch touches; dense models: every row) and pushes per-shard updates; every shard
applies them (and checkpoints when its policy is due). The coordinator passes futures only:
no table data goes through it while it iterates; it pulls the full tables when asked (the
objective, a recovery). A shard that dies (``NodeLost``: actor death or timeout) is replaced by
a new shard server that reopens the dead shard's store, then

* ``partial``: the replacement reads its rows back; the survivors and the counter carry on;
* ``rebuild``: as partial, then the rows the rest of the state determines are recomputed
  (``Split.rebuild``: LDA's counts from the topic assignments, ALS's last-solved side);
* ``full``: every shard rolls back to the newest iteration all shards committed, and the
  counter rewinds to it (the iterations after it are done again).

A dead worker is replaced by a new one on the same data partition, and the iteration it failed
(which no shard could apply) runs again. Worker-side state (LDA: topic assignments z,
document-topic counts) lives in the workers; the coordinator keeps a copy of it at every
iteration the shards checkpoint (on Ray: object-store references, which outlive the worker).
A replaced worker gets its copy of the last checkpoint iteration and the split corrects the
tables to agree with it (``Split.after_worker_loss``); after a shard recovery the split makes
the workers' state consistent with the restored rows (``Split.after_restore``: LDA re-deals
the tokens of the restored words), a full rollback first reinstating the copy of the
iteration rolled back to. The run itself (its kill schedule, Ctrl-C, the result) is run.py's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policies import make_policy
from ..recovery import REBUILD
from ..theory import perturbation_norm
from .calls import Calls
from .config import TrainConfig
from .failures import Failure, RuntimeFailure, WorkerFailure
from .local import Cluster, Handle, NodeLost
from .nodes import CheckpointConfig, ShardServer, StandbyShard, WorkerNode
from .run import run
from .split import Layout, Split

KEEP_STATES = 6  # worker-state snapshots kept for full rollbacks (the stores keep 3 versions)


class Trainer:
    def __init__(self, cfg: TrainConfig, split: Split, cluster: Cluster, store: str) -> None:
        self.cfg, self.split, self.cluster = cfg, split, cluster
        self.calls = Calls(cluster, cfg.timeout)
        initial = split.initial_tables()
        most = max(initial.items(), key=lambda item: item[1].shape[0])
        if most[1].shape[0] < cfg.shards:  # (a small table may leave shards without rows)
            raise ConfigError(
                f"--shards {cfg.shards}: more shards than rows (the largest table of model "
                f"{cfg.model}, {most[0]!r}, has {most[1].shape[0]}); at most {most[1].shape[0]}"
            )
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
            self.calls.started(self.shards + self.workers)
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
        self.lost_background_cpu = 0.0  # of shards killed (taken just before the kill)
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
            h = Handle("shard", k, standby.actor, dead=standby.dead)
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
        new = self.calls.start_replacements(
            lambda i: self.cluster.start("worker", i, WorkerNode, parts[i], self.layout),
            dead,
            "worker",
        )
        for i, h in zip(dead, new, strict=True):
            self.workers[i] = h
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
                _, lost = self.calls.ask_each(self.shards, "adjust", parts)
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
        workers = [i for i, w in enumerate(self.workers) if not self.calls.alive(w)]
        dead = [k for k in lost if not self.calls.alive(self.shards[k])]
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
        self.calls.ask(self.shards, "set_checkpointing", self.checkpointing)

    def kill(self, shards: list[int]) -> None:
        """Kill shard nodes for real (SIGKILL on Ray); the next call notices. Their background
        checkpoint CPU so far is asked for first, so that the run's total keeps it."""
        self.lost_background_cpu += self.background_cpu([self.shards[k] for k in shards])
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
        # the replacements start side by side (the standby, if alive, is the first)
        for k, h in zip(
            lost, self.calls.start_replacements(self._replacement, lost, "shard"), strict=True
        ):
            self.shards[k] = h
        if not self.checkpointing:
            self.calls.ask([self.shards[k] for k in lost], "set_checkpointing", False)
        target = None
        if self.cfg.recovery in ("partial", REBUILD):
            stats, dead = self.calls.ask([self.shards[k] for k in lost], "restore")
            restored_from = [s["iteration"] for s in stats if s is not None]
            for k, it in zip(lost, restored_from, strict=False):
                self.durable[k] = it
        else:
            latest, dead = self.calls.ask(self.shards, "latest_iteration")
            if not dead:
                target = min(latest)
                stats, dead = self.calls.ask(self.shards, "rollback", target)
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
        _, dead = self.calls.ask_each(
            [self.shards[k] for k in lost], "adjust", [parts[k] for k in lost]
        )
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
        out, dead = self.calls.ask(self.shards, "close")
        if dead and not dead_ok:
            raise RuntimeFailure(f"shards {dead} died while closing")
        self.checkpoint_bytes += sum(c["saved_bytes"] for c in out if c is not None)
        return [self.durable[k] if c is None else c["iteration"] for k, c in enumerate(out)]

    def background_cpu(self, handles: list[Handle]) -> float:
        """CPU seconds of these shards' background checkpoint work so far: their save threads'
        and store writers' (0 with synchronous writes, whose work is in
        ``checkpoint_seconds``)."""
        stats, _ = self.calls.ask(handles, "stats")
        return sum(
            st["save_thread_cpu_seconds"] + st["store_writer_cpu_seconds"]
            for st in stats
            if st is not None
        )

    @property
    def awaiting_recovery(self) -> bool:
        """Nodes were killed and not yet found dead and replaced (the next step does it)."""
        return self._killed_at is not None

    # -- a whole run ----------------------------------------------------------------------
    def run(self, progress=None) -> dict[str, Any]:
        """Run ``cfg.iterations`` iterations with the configured kills; the result document
        (see run.py)."""
        return run(self, progress)
