"""The two kinds of node of the parameter server: shard servers and workers.

Both are plain classes: the local runtime calls them in-process, the Ray runtime wraps them in
``ray.remote`` actors. A shard server owns a row range of every table, applies the pushed
updates, keeps its last-saved copy, runs the checkpoint policy and writes its *own* store
(``<store>/shard-<k>``, rows numbered locally 0..n_k-1), so every shard is the exclusive writer
of its store and a replacement shard reopens the store of the one it replaces.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checkpoint import Checkpointer
from ..errors import StoreError
from ..policies import Policy, PriorityPolicy, TrackedPriority, make_policy
from ..recovery import restore_rows
from ..state import State
from ..store import open_store
from ..store.index import load_kernels
from ..store.urls import shard_url
from ..store.writer import OrderedWorker
from ..validation import (
    DEFAULT_FRACTION,
    DEFAULT_KEEP_LAST,
    DEFAULT_PERIOD,
    DEFAULT_POLICY,
    DEFAULT_SAVE_PRIORITY,
)
from .split import Layout, ServerRule, Update, WorkerPart, combine, slot_table


@dataclass(frozen=True)
class CheckpointConfig:
    policy: str = DEFAULT_POLICY
    period: int = DEFAULT_PERIOD
    fraction: float | None = DEFAULT_FRACTION
    seed: int = 0
    store: str = "scar-store"
    async_writes: bool = False
    fsync: bool = True
    keep_last: int = DEFAULT_KEEP_LAST
    # of the save and store-writer threads (async writes)
    background_priority: str = DEFAULT_SAVE_PRIORITY


IN_FLIGHT = 2  # async writes: saves a shard lets the store write before waiting for them


def shard_policy(ckpt: CheckpointConfig, k: int, n_rows: Mapping[str, int]) -> Policy:
    policy = make_policy(ckpt.policy, ckpt.period, ckpt.fraction, seed=ckpt.seed * 1009 + k)
    if type(policy) is PriorityPolicy:
        return TrackedPriority(policy, n_rows)
    return policy


class SaveThread(OrderedWorker):
    """A shard's saves, one at a time, in order, on one long-lived thread (an ``OrderedWorker``,
    as the store's writer): ``submit(iteration)`` first waits for the save before it, so at
    most one is pending. ``join`` waits for the save in progress, raises its error, if any, and
    returns the seconds waited. With ``idle`` the thread runs at idle CPU priority: selection
    and snapshots use the cores the workers leave idle (at the barrier, while results travel)
    instead of slowing the workers. ``cpu_seconds``: the CPU time of the saves run here."""

    def __init__(self, save, idle: bool = False) -> None:
        super().__init__(self._run, name="scar-shard-save", idle=idle)
        # a weak reference: a shard dropped without close() is freed, and its thread ends
        self._save = weakref.WeakMethod(save)
        weakref.finalize(save.__self__, self.stop)

    def _run(self, iteration: int) -> None:
        save = self._save()
        if save is not None:  # else the shard is gone: ``stop`` ends the thread
            save(iteration)

    def submit(self, iteration: int) -> None:
        self.join()
        super().submit(iteration)

    def join(self) -> float:
        waited = self.wait()
        error = self.take_error()
        if error is not None:
            raise error[1]
        return waited


def warm_up_kernels(tables: set[tuple[np.dtype, int]]) -> None:
    """Load the store's compiled loops and the selection's kernels for tables of these
    (dtype, width): see ``ShardServer._warm_up``."""
    # numba: imported by the shards that select rows only
    from ..select import single_threaded, warm_up, warm_up_rows

    load_kernels()
    with single_threaded():
        for dtype, width in tables:
            warm_up_rows(dtype, width)
            warm_up(dtype)  # the scores' dtype: the table's (live and saved share it)


class ShardServer:
    """Parameter-server shard ``k``. ``initial`` = its rows of the starting tables; None for a
    replacement, whose rows stay NaN until ``restore`` or ``rollback`` reads them back."""

    def __init__(
        self,
        k: int,
        layout: Layout,
        rule: ServerRule,
        ckpt: CheckpointConfig,
        initial: Mapping[str, np.ndarray] | None,
    ) -> None:
        self.k, self.rule, self.cfg = k, rule, ckpt
        self.url = shard_url(ckpt.store, k)
        shapes = {n: (len(r), layout.shapes[n][1]) for n, r in layout.rows(k).items()}
        if initial is None:
            tables = {n: np.full(s, np.nan, layout.dtypes[n]) for n, s in shapes.items()}
        else:
            tables = {n: np.array(initial[n], copy=True) for n in shapes}
        # the rule's optimizer state: tables beside their table's rows, saved with them
        self.slots: dict[str, dict[str, np.ndarray]] = {}
        follows = {}
        for n, (rows, width) in shapes.items():
            self.slots[n] = {}
            for slot, (w, init) in rule.slots(n).items():
                full = slot_table(n, slot)
                value = np.nan if initial is None else init
                tables[full] = np.full((rows, w or width), value, layout.dtypes[n])
                self.slots[n][slot] = tables[full]
                follows[full] = n
        self.state = State(tables, n_shards=1)
        self.store = open_store(
            self.url,
            async_writes=ckpt.async_writes,
            fsync=ckpt.fsync,
            keep_last=ckpt.keep_last,
            writer_priority=ckpt.background_priority,
        )
        policy = shard_policy(ckpt, k, {n: s[0] for n, s in shapes.items()})
        self.tracked = policy if isinstance(policy, TrackedPriority) else None
        self.ckpt = Checkpointer(self.state, policy, self.store, follows=follows)
        self.pending: list[int] = []  # iterations of saves that may still be in flight
        idle = ckpt.background_priority == "idle"
        self._saver = SaveThread(self._save, idle) if ckpt.async_writes else None
        self.durable = -1  # newest iteration known committed
        # checkpoint work of this shard (see ``stats``): seconds in ``apply`` spent on saves
        # (the critical path), saves, and the CPU seconds of the save threads
        self._critical = 0.0
        self._saves = 0
        self._store_wait = 0.0
        self._serve_wall = self._serve_cpu = 0.0
        self._saved_bytes = self._reported_bytes = 0  # value bytes of periodic saves
        self.checkpointing = True  # False: due saves are skipped (``set_checkpointing``)
        if initial is not None:
            self._save(0, base=True)
        if self.tracked is not None:
            self._warm_up()

    def _warm_up(self) -> None:
        """Load the compiled selection and store kernels now, before the shard serves: the
        first load in a process (numba's import and cached machine code, ~0.3-0.5 s) would
        otherwise fall in the first save, and with the next ``apply`` waiting for it, on an
        iteration's critical path (in a short run, most of the ``checkpoint_seconds`` total of
        ``scar train --runtime ray --model mlr --dataset digits --shards 4 --period 8
        --iterations 30``). Loaded, the store's kernels also serve every small save
        (``scar.store.index.compiled``), not only the large ones. The selection's radix
        kernels are compiled here too if numba's cache does not hold them yet (the first run
        of an installation: seconds, which its first priority save would otherwise wait)."""
        warm_up_kernels({(t.dtype, t.shape[1]) for t in self.state.values()})

    # -- serving --------------------------------------------------------------------------
    def pid(self) -> int:
        return os.getpid()

    @contextmanager
    def _serving(self):
        """Count the wall and CPU time of a call the shard serves (``stats``)."""
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self._serve_wall += time.perf_counter() - w0
            self._serve_cpu += time.thread_time() - c0

    def pull(self) -> dict[str, np.ndarray]:
        """Every row of every table (copies)."""
        return self.read(None)

    def read(self, request: Mapping[str, np.ndarray | None] | None) -> dict[str, np.ndarray]:
        """The rows a worker asked for (``Layout.locate``: per table, shard-local positions
        or None for every row; None: every row of every table), copied."""
        with self._serving():
            if request is None:
                return {n: self.state[n].copy() for n in self.slots}
            return {
                n: self.state[n].copy() if ids is None else self.state[n][ids]
                for n, ids in request.items()
            }

    def apply(self, iteration: int, args: Any, *pushes: Mapping[str, Update]) -> dict[str, Any]:
        with self._serving():
            return self._apply(iteration, args, *pushes)

    def _apply(self, iteration: int, args: Any, *pushes: Mapping[str, Update]) -> dict[str, Any]:
        """Apply every worker's pushes for ``iteration``, then checkpoint if the policy is due."""
        waited = self._join()
        for name, slots in self.slots.items():
            live = self.state[name]
            ups = [p[name] for p in pushes if name in p]
            rows, total = combine(live.shape[0], ups)
            if total is not None:
                self.rule.apply(name, live, rows, total, args, slots)
                if self.tracked is not None:
                    self.tracked.touch(name, rows)
            for u in ups:
                if u.op == "set":
                    self._put(name, u)
        t0 = time.perf_counter()
        due = self.checkpointing and self.ckpt.policy.is_due(iteration)
        if due:
            if self.cfg.async_writes:
                self._saver.submit(iteration)  # selects and snapshots while workers compute
            else:
                self._save(iteration)
            self._saves += 1
        critical = waited + (time.perf_counter() - t0 if due else 0.0)
        self._critical += critical
        return {
            "checkpoint_seconds": critical,
            "saved_bytes": self._take_saved_bytes(),
            "durable": self.durable,
        }

    def _take_saved_bytes(self) -> int:
        """Value bytes of the saves finished since the last call: what they wrote, which for
        a sparse model's priority saves follows the rows changed (a save in progress on the
        save thread is counted by a later call)."""
        done = self._saved_bytes
        new, self._reported_bytes = done - self._reported_bytes, done
        return new

    def adjust(self, pushes: Mapping[str, Update]) -> int:
        """Change rows outside an iteration (``Split.after_worker_loss``): ``"add"`` adds
        the values, ``"set"`` overwrites; no server rule runs. Rows changed."""
        with self._serving():
            return sum(self._put(name, u) for name, u in pushes.items())

    def _put(self, name: str, u: Update) -> int:
        """Write ``u`` into the live table as it says (``"add"`` or ``"set"``), bypassing the
        server rule, and mark its rows changed for the next priority save. Rows written."""
        live = self.state[name]
        at = slice(None) if u.rows is None else u.rows
        if u.op == "add":
            live[at] += u.values
        else:
            live[at] = u.values
        if self.tracked is not None:
            self.tracked.touch(name, u.rows)
        return live.shape[0] if u.rows is None else len(u.rows)

    def _join(self) -> float:
        """Wait for a background save; its error, if any, is raised here. Seconds waited."""
        return 0.0 if self._saver is None else self._saver.join()

    def _save(self, iteration: int, base: bool = False) -> int:
        """Save (all rows if ``base``). With async writes the store queues the version behind
        those still being written; once ``IN_FLIGHT`` saves are pending (and before a base
        save), first wait for them, and they count as durable. Not waiting for the previous
        save every time keeps a long write (a compaction of the store) from delaying the
        snapshot, and so the next ``apply``, by more than the saves in flight allow."""
        if base or not self.cfg.async_writes or len(self.pending) >= IN_FLIGHT:
            t0 = time.perf_counter()
            self.store.wait()
            self._store_wait += time.perf_counter() - t0
            if self.pending:
                self.durable = self.pending[-1]
                self.pending.clear()
        if base or self.tracked is None:
            result = self.ckpt.save_all(iteration) if base else self.ckpt.step(iteration)
        else:
            from ..select import single_threaded  # numba: imported on first use

            with single_threaded():  # 2 cores: parallel kernels would only fight the workers
                result = self.ckpt.step(iteration)
        if self.cfg.async_writes:
            self.pending.append(iteration)
        else:
            self.durable = iteration
        if not base:
            self._saved_bytes += result.value_bytes
        return result.value_bytes

    def stats(self) -> dict[str, float]:
        """Cumulative counters of this shard's checkpoint work: ``critical_seconds`` spent in
        ``apply`` on saves (waiting for the previous background save, or saving, when writes
        are synchronous), ``saves``, ``save_thread_cpu_seconds`` (CPU of the background
        select-and-snapshot threads), ``store_wait_seconds`` (of which: waiting for the
        store to finish older writes), ``store_writer_cpu_seconds`` (CPU of the store's
        background writer), ``process_cpu_seconds`` (all threads of this process: on Ray,
        the shard's own process), and ``serve_wall_seconds`` / ``serve_cpu_seconds``, the
        wall and CPU time of ``pull`` and ``apply`` (their difference: time the serving thread
        waited, for a core or for the GIL)."""
        return {
            "critical_seconds": self._critical,
            "saves": self._saves,
            "save_thread_cpu_seconds": 0.0 if self._saver is None else self._saver.cpu_seconds,
            "store_wait_seconds": self._store_wait,
            "store_writer_cpu_seconds": getattr(self.store, "writer_cpu_seconds", 0.0),
            "process_cpu_seconds": time.process_time(),
            "serve_wall_seconds": self._serve_wall,
            "serve_cpu_seconds": self._serve_cpu,
        }

    def set_checkpointing(self, on: bool) -> bool:
        """Pause (False) or resume (True) the periodic saves; rows stay tracked meanwhile, so
        the first priority save after a pause chooses among every row changed since the last
        save. Saves already started finish. Returns ``on``."""
        self.checkpointing = bool(on)
        return self.checkpointing

    def sync(self) -> int:
        """Wait until every save is durable; the newest committed iteration."""
        self._join()
        self.store.wait()
        if self.pending:
            self.durable = self.pending[-1]
            self.pending.clear()
        return self.durable

    # -- recovery -------------------------------------------------------------------------
    def latest_iteration(self) -> int:
        self._join()
        latest = self.store.latest()
        return -1 if latest is None else latest.iteration

    def restore(self) -> dict[str, Any]:
        """Partial recovery of this (replacement) shard: every row from its latest saved value."""
        rec = self.ckpt.recover([0], mode="partial")
        if self.tracked is not None:
            self.tracked.touch_all()
        self.durable = self.latest_iteration()
        return {
            "rows": sum(rec.rows_restored.values()),
            "bytes": rec.bytes_restored,
            "iteration": self.durable,
        }

    def rollback(self, target: int) -> dict[str, Any]:
        """Full recovery: every row to its saved value as of the checkpoint at ``target``, then
        a complete save at ``target`` so later reads never resolve rows of the abandoned run."""
        self.sync()
        latest = self.store.latest()
        if latest is not None and latest.iteration == target:
            counts, nbytes = restore_rows(self.state, self.store, {n: None for n in self.state})
        else:
            counts, nbytes = self._restore_version(target)
        if self.tracked is not None:
            self.tracked.touch_all()
        self._save(target, base=True)
        self.sync()
        return {"rows": sum(counts.values()), "bytes": nbytes, "iteration": target}

    def _restore_version(self, target: int) -> tuple[dict[str, int], int]:
        old = open_store(self.url, readonly=True)
        try:
            match = [v for v in old.versions() if v.iteration == target]
            if not match:
                raise StoreError(
                    f"{self.url}: no checkpoint of iteration {target} is kept; "
                    f"kept: {[v.iteration for v in old.versions()]}"
                )
            old.checkout(match[-1].version)
            return restore_rows(self.state, old, {n: None for n in self.state})
        finally:
            old.close()

    def close(self) -> dict[str, int]:
        """Make every save durable and close the store: ``iteration``, the newest committed,
        and ``saved_bytes``, the value bytes of the saves finished since the last ``apply``
        reported them."""
        try:
            durable = self.sync()
        finally:
            if self._saver is not None:
                self._saver.close()
            self.store.close()
        return {"iteration": durable, "saved_bytes": self._take_saved_bytes()}

    def crash(self) -> None:
        """Stop as a SIGKILLed shard process would (the local runtime's kill): the saves not
        committed yet are lost, none is made durable on the way out."""
        self.store.abandon()
        if self._saver is not None:
            self._saver.close()  # (a save still running finds the store gone: dropped)


class StandbyShard(ShardServer):
    """A started shard process that serves nothing yet: ``become`` makes it shard ``k`` (a
    replacement, whose rows ``restore`` or ``rollback`` then read back). It has paid at
    start-up for what a replacement otherwise pays between a kill and serving again - on Ray
    a new process (~0.6 s here) and, for priority checkpoints, loading the compiled kernels
    for the layout's tables (~0.75 s) - so the coordinator keeps one ready while it trains
    and starts the next after each recovery."""

    def __init__(self, layout: Layout, ckpt: CheckpointConfig) -> None:
        if isinstance(shard_policy(ckpt, 0, {}), TrackedPriority):
            warm_up_kernels({(layout.dtypes[n], s[1]) for n, s in layout.shapes.items()})

    def become(
        self,
        k: int,
        layout: Layout,
        rule: ServerRule,
        ckpt: CheckpointConfig,
        initial: Mapping[str, np.ndarray] | None = None,
    ) -> int:
        """Start serving as shard ``k`` (as ``ShardServer(k, ...)`` would); its pid."""
        ShardServer.__init__(self, k, layout, rule, ckpt, initial)
        return os.getpid()


class WorkerNode:
    """A worker: one data partition; pulls rows, computes an update, pushes per shard."""

    def __init__(self, part: WorkerPart, layout: Layout) -> None:
        self.part, self.layout = part, layout
        self._want: tuple[int, dict] | None = None  # the iteration and rows last requested
        part.set_state(part.state())  # arrays shipped to an actor arrive read-only

    def pid(self) -> int:
        return os.getpid()

    def request(self, iteration: int, args: Any) -> list[dict] | dict:
        """The rows this worker reads in ``iteration``, as one request per shard (sparse
        pulls: ``Split.sparse_pulls``); the shards answer them with ``ShardServer.read``."""
        self._want = (iteration, self.layout.check_request(self.part.rows(iteration, args)))
        out = self.layout.locate(self._want[1])
        return out if len(out) > 1 else out[0]  # one return value per shard

    def compute(
        self, iteration: int, args: Any, *pulls: Mapping[str, np.ndarray]
    ) -> list[dict[str, Update]] | dict[str, Update]:
        """This worker's update for ``iteration`` from the shards' answers (to its
        ``request`` of the same iteration, or every row), cut per shard."""
        want = self._want[1] if self._want and self._want[0] == iteration else None
        tables = self.layout.assemble(pulls) if want is None else self.layout.gather(want, pulls)
        out = self.layout.split(self.part.update(tables, iteration, args))
        return out if len(out) > 1 else out[0]  # one return value per shard

    def state(self) -> dict[str, np.ndarray]:
        """A copy of the worker-side state (for the objective, checkpoints and re-deals)."""
        return self.part.state()

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.part.set_state(state)
