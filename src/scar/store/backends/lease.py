"""Who holds a store's writer lock, whether that process is provably gone, and leases.

A local store's lock is an ``flock`` that dies with its process. An object store has no such
thing: its lock is an object, ``LOCK``, and nothing removes it when the writer dies. So the
object is a *lease*: it names its holder (:func:`identity`) and the time it was last renewed,
and a live writer renews it every ``ttl / 4`` seconds (:class:`Renewer`). Another writer may
take the lock over only when

* the holder is provably gone (:func:`alive_here` is False): the record names this machine's
  kernel boot and process namespace, and that pid runs no more (or runs another program,
  started at another time) — a writer killed here is replaced at once; or
* the lease has expired: not renewed for ``ttl`` seconds.

A holder that cannot renew its lease for ``FENCE * ttl`` seconds stops committing
(:meth:`Renewer.check`), so that by the time others may take an expired lease over, it has
stopped — with clocks that differ by less than ``(1 - FENCE) * ttl`` between machines.
A record from another machine, or one without these fields, is never judged dead: it waits
for its lease to expire (``scar ckpt unlock --force`` overrides, at the user's risk).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Callable

from ...errors import StoreError

TTL = 30.0  # seconds a lease lasts without renewal
FENCE = 2 / 3  # a holder stops committing once it has not renewed for this share of the ttl


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _boot_id() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it does not run."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def identity() -> dict:
    """This process, as a lock record names it: host and pid for people; boot, namespace and
    start time so that another process on this machine can tell whether it still runs."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "boot": _boot_id(),
        "pidns": _pid_namespace(),
        "start": _start_time(pid),
    }


def alive_here(owner: dict | None) -> bool | None:
    """True if ``owner`` (a lock record) is a process running on this machine now; False if it
    provably is not (same boot and process namespace, and its pid is gone or is another
    process); None if that cannot be told from here."""
    if not isinstance(owner, dict):
        return None
    me = identity()
    if me["boot"] is None or me["pidns"] is None:
        return None
    if owner.get("boot") != me["boot"] or owner.get("pidns") != me["pidns"]:
        return None
    pid, start = owner.get("pid"), owner.get("start")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(start, int):
        return None
    return _start_time(pid) == start


def age(owner: dict | None, now: float | None = None) -> float | None:
    """Seconds since ``owner``'s lease was last renewed (None: no lease in the record)."""
    if not isinstance(owner, dict):
        return None
    renewed = owner.get("renewed")
    if not isinstance(renewed, int | float) or isinstance(renewed, bool) or renewed != renewed:
        return None
    return (time.time() if now is None else now) - float(renewed)


def ttl_of(owner: dict | None) -> float:
    ttl = owner.get("ttl") if isinstance(owner, dict) else None
    ok = isinstance(ttl, int | float) and not isinstance(ttl, bool) and 0 < ttl < 1e6
    return float(ttl) if ok else TTL


def expired(owner: dict | None) -> bool:
    a = age(owner)
    return a is not None and a > ttl_of(owner)


def describe(owner: dict | None) -> str:
    if not isinstance(owner, dict):
        return "another writer"
    since = owner.get("since")
    when = ""
    if isinstance(since, int | float) and 0 <= since < 1e11:
        when = " since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    out = f"pid {owner.get('pid')} on {owner.get('host')}{when}"
    a = age(owner)
    if a is not None:
        out += f", lease renewed {max(a, 0):.0f} s ago (expires after {ttl_of(owner):.0f} s)"
    return out


def why_breakable(owner: dict | None) -> str | None:
    """Why another writer may take this lock over, or None if it may not (yet)."""
    if alive_here(owner) is False:
        return "its process has exited"
    if expired(owner):
        return f"its lease expired ({age(owner):.0f} s since it was renewed)"
    return None


class Renewer:
    """Renews a lease every ``ttl / 4`` seconds on a daemon thread (``renew()`` returns False
    once the lease is someone else's), and tells the writer whether it may still commit."""

    def __init__(self, renew: Callable[[], bool], ttl: float, what: str) -> None:
        # a weak reference: a store dropped without close() is freed, and its lease lapses
        self._renew, self.ttl, self._what = weakref.WeakMethod(renew), ttl, what
        self._ok = time.monotonic()  # when the last renewal that succeeded was started
        self._lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="scar-lease", daemon=True)
        self._thread.start()

    def _once(self) -> None:
        with self._lock:
            if self._lost is not None:
                return
            t0 = time.monotonic()
            renew = self._renew()
            if renew is None:
                self._stop.set()
                return
            try:
                mine = renew()
            except (OSError, StoreError):
                return  # unreachable for now: try again; ``check`` fences if it lasts
            if mine:
                self._ok = t0
            else:
                self._lost = "another writer has taken it over"

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self._once()

    def check(self) -> None:
        """Raise if this writer must not commit: its lease is lost, or has not been renewed
        for ``FENCE * ttl`` seconds and cannot be now."""
        if self._lost is None and time.monotonic() - self._ok > FENCE * self.ttl:
            self._once()
            if self._lost is None and time.monotonic() - self._ok > FENCE * self.ttl:
                self._lost = f"it could not be renewed for {FENCE * self.ttl:.0f} s"
        if self._lost is not None:
            raise StoreError(
                f"lost the writer lock of {self._what}: {self._lost}; nothing more is "
                "committed by this writer"
            )

    def halt(self) -> None:
        """Stop renewing (without waiting for the thread)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
