"""Calls to a cluster's nodes with the run's timeout: to all of them at once, waiting for
starts (and starting again a replacement that dies on the way), asking whether one lives.
A node that does not answer in time counts as dead (``NodeLost``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .failures import RuntimeFailure
from .local import Cluster, Handle, NodeLost

START_TRIES = 3  # starts of a replacement node that dies while starting, before giving up


class Calls:
    """``cluster``'s nodes called with ``timeout`` seconds to answer."""

    def __init__(self, cluster: Cluster, timeout: float) -> None:
        self.cluster, self.timeout = cluster, timeout

    def started(self, handles: list[Handle]) -> None:
        """Wait until every node has started (its constructor has run); note their pids."""
        futures = [self.cluster.call(h, "pid") for h in handles]
        for h, f in zip(handles, futures, strict=True):
            h.meta["pid"] = self.cluster.get(h, f, self.timeout)

    def start_replacements(
        self, start: Callable[[int], Handle], indices: list[int], role: str
    ) -> list[Handle]:
        """Start a replacement node per index (``start(i)`` makes one) and wait for them; a
        replacement that dies while it starts (its machine was lost too, and the cluster
        placed it there before it knew) is started again, up to ``START_TRIES`` times."""
        handles = {i: start(i) for i in indices}
        for attempt in range(START_TRIES):
            failed = []
            futures = {
                i: self.cluster.call(h, "pid") for i, h in handles.items() if "pid" not in h.meta
            }
            for i, f in futures.items():
                try:
                    handles[i].meta["pid"] = self.cluster.get(handles[i], f, self.timeout)
                except NodeLost:
                    failed.append(i)
            if not failed:
                return [handles[i] for i in indices]
            for i in failed:
                self.cluster.discard(handles[i])
                if attempt + 1 < START_TRIES:
                    handles[i] = start(i)
        raise RuntimeFailure(
            f"the replacements of {role}s {failed} died {START_TRIES} times while starting"
        )

    def ask(self, handles: list[Handle], method: str, *args: Any) -> tuple[list[Any], list[int]]:
        """Call ``method`` on every node; (results, indices of the nodes found dead)."""
        return self.ask_each(handles, method, [args] * len(handles))

    def ask_each(
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
                out.append(self.cluster.get(h, f, self.timeout))
            except NodeLost:
                out.append(None)
                lost.append(i)
        return out, lost

    def alive(self, h: Handle) -> bool:
        """Whether ``h`` answers (within 10 s at most)."""
        try:
            self.cluster.get(h, self.cluster.call(h, "pid"), min(10.0, self.timeout))
            return True
        except NodeLost:
            return False
