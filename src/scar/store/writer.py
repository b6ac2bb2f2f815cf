"""Asynchronous checkpoint writes: snapshot the rows, return to training, write in the background.

``save()`` copies the rows it is given into a snapshot buffer (a plain memcpy; buffers are
recycled, so the pages are already mapped) and queues the write. One background thread writes
the queued versions in order, each committed as in synchronous mode. At most ``max_pending``
versions wait in the queue; a further ``save()`` blocks until one is written (back-pressure
rather than unbounded memory). With ``idle`` the writer thread runs at idle CPU priority
(``idle_priority``). A failure in the background is kept and raised, as a
:class:`StoreError`, by the next call on the store; the versions queued behind the failed one
are dropped (never committed), so what is committed is always a prefix of what was saved.

The thread is an ``OrderedWorker``: one mechanism for every background checkpoint thread (the
store's writer here, a runtime shard's saves in ``scar.runtime.nodes``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ScarError, StoreError

SMALL = 1 << 16  # below this, just allocate


PRIORITIES = ("normal", "idle")


def idle_priority() -> bool:
    """Let the calling thread run only on CPU time nothing else wants (Linux ``SCHED_IDLE``,
    per thread): background checkpoint work then yields the cores to training instead of
    taking a share of them. False where the platform has no such policy (nothing changes)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


class SnapshotPool:
    """Recycled byte buffers for snapshots, so a copy does not pay for page faults."""

    def __init__(self, keep: int = 8) -> None:
        self._free: list[np.ndarray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def copy(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(a copy of ``a``, the buffer to give back once it has been written)."""
        a = np.asarray(a)
        if a.nbytes < SMALL:
            return np.array(a, copy=True, order="C"), None
        buf = None
        with self._lock:
            # by position: list.remove would compare arrays element-wise, not by identity
            fits = [i for i, b in enumerate(self._free) if a.nbytes <= b.nbytes <= 2 * a.nbytes]
            if fits:
                buf = self._free.pop(min(fits, key=lambda i: self._free[i].nbytes))
        if buf is None:
            buf = np.empty(a.nbytes, np.uint8)
        out = buf[: a.nbytes].view(a.dtype).reshape(a.shape)
        np.copyto(out, a, casting="no")
        return out, buf

    def give(self, buffers: list[np.ndarray | None]) -> None:
        with self._lock:
            for b in buffers:
                if b is not None:
                    self._free.append(b)
            while len(self._free) > self._keep:
                self._free.pop(min(range(len(self._free)), key=lambda i: self._free[i].nbytes))


class OrderedWorker:
    """One long-lived thread that runs ``work(job)`` for each submitted job, in submission order:
    the background half of the store's async writes (``BackgroundWriter``) and of a runtime
    shard's saves (``scar.runtime.nodes.SaveThread``).

    Handing a job to a waiting thread costs a queue put (starting a thread per job made the
    caller wait for it to be scheduled: 6-20 ms on a loaded machine, measured). With ``idle``
    the thread runs at idle CPU priority (``idle_priority``). At most ``max_pending`` jobs wait
    in the queue (0: no bound); a further ``submit`` blocks until one is taken. A job that
    raises is kept (``take_error``) and the jobs queued behind it are dropped, not run;
    ``release(job)``, if given, is called for every job once it is done or dropped.
    ``cpu_seconds`` is the CPU time of the jobs run (for benchmarks)."""

    def __init__(
        self,
        work: Callable[[Any], None],
        *,
        name: str,
        max_pending: int = 0,
        idle: bool = False,
        release: Callable[[Any], None] | None = None,
    ) -> None:
        self._work = work
        self._name = name
        self._idle = idle
        self._release = release
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: tuple[Any, BaseException] | None = None
        self._thread: threading.Thread | None = None
        self.cpu_seconds = 0.0

    def submit(self, job: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(job)

    def _loop(self) -> None:
        if self._idle:
            idle_priority()
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    c0 = time.thread_time()
                    try:
                        self._work(job)
                    finally:
                        self.cpu_seconds += time.thread_time() - c0
            except BaseException as e:  # kept for the caller (take_error)
                self._error = (job, e)
            finally:
                if job is not None and self._release is not None:
                    self._release(job)
                self._queue.task_done()

    def wait(self) -> float:
        """Until every submitted job is done (or dropped); the seconds waited."""
        if not self._queue.unfinished_tasks:
            return 0.0
        t0 = time.perf_counter()
        self._queue.join()
        return time.perf_counter() - t0

    def take_error(self) -> tuple[Any, BaseException] | None:
        """(the job that failed, its exception), once the jobs behind it are dropped, and
        forgotten; None if no job failed since the last call."""
        if self._error is None:
            return None
        self._queue.join()  # the jobs behind the failed one are dropped, not run
        error, self._error = self._error, None
        return error

    @property
    def failed(self) -> bool:
        return self._error is not None

    def stop(self) -> None:
        """Let the thread end once the jobs submitted so far are done, without waiting for it
        (callable from the thread itself)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread = None

    def close(self) -> None:
        """Run the jobs submitted so far, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def abandon(self) -> None:
        """Stop as a killed process would: the queued jobs are dropped unrun (the one in
        progress ends as its ``work`` decides), then the thread ends."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and self._release is not None:
                self._release(job)
            self._queue.task_done()
        self.close()
        self._error = None


class BackgroundWriter(OrderedWorker):
    """Writes the store's queued versions on one thread, in order (``work(job)``), at most
    ``max_pending`` waiting; a failure is raised, as a :class:`StoreError`, by the next call."""

    def __init__(
        self,
        work: Callable[[Any], None],
        release: Callable[[Any], None],
        max_pending: int = 2,
        idle: bool = False,
    ) -> None:
        pending = max(1, max_pending)
        super().__init__(
            work, name="scar-store-writer", max_pending=pending, idle=idle, release=release
        )
        self.failed_job: Any = None  # the job whose failure ``check`` raised last

    def submit(self, job: Any) -> None:
        self.check()
        super().submit(job)

    def wait(self) -> float:
        """Until every submitted job is done; then raise a background failure, if any."""
        waited = super().wait()
        self.check()
        return waited

    def check(self) -> None:
        error = self.take_error()
        if error is not None:
            job, e = error
            self.failed_job = job
            what = f"version {getattr(job, 'version', '?')}"
            if isinstance(e, ScarError):
                raise StoreError(f"background write of checkpoint {what} failed: {e}") from e
            raise StoreError(
                f"background write of checkpoint {what} failed: {type(e).__name__}: {e}"
            ) from e
