"""Where nodes run: the cluster interface, and the local (in-process) cluster.

A :class:`Cluster` starts nodes (shard servers, workers), calls their methods and returns
futures, and kills nodes. ``get`` turns the death of a node into :class:`NodeLost` and an error
a node raised into that error, so the coordinator never hangs and never sees a backend's
exception types. The local cluster runs every node in this process, synchronously: a "kill"
destroys the node object (its live rows are gone) and loses what a killed process loses - the
saves its store had not committed yet (``ShardServer.crash``); what was committed survives, as
a disk survives a process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


class NodeLost(Exception):  # noqa: N818 - an event, not a bug
    """A node died (or did not answer in time)."""

    def __init__(self, handle: Handle, why: str) -> None:
        super().__init__(f"{handle.role} {handle.index} {why}")
        self.handle, self.why = handle, why


@dataclass(eq=False)
class Handle:
    role: str  # "shard" or "worker"
    index: int
    actor: Any
    dead: bool = False
    meta: dict = field(default_factory=dict)


class Cluster(ABC):
    name = ""

    @abstractmethod
    def start(self, role: str, index: int, cls: type, *args: Any) -> Handle: ...

    @abstractmethod
    def call(self, h: Handle, method: str, *args: Any, num_returns: int = 1) -> Any:
        """Invoke ``method``; returns a future (a list of ``num_returns`` futures if > 1)."""

    @abstractmethod
    def get(self, h: Handle, future: Any, timeout: float | None = None) -> Any:
        """The result of ``h``'s call; NodeLost if ``h`` died, the node's error if it raised."""

    @abstractmethod
    def kill(self, h: Handle) -> None:
        """Kill the node for real (the Ray cluster SIGKILLs its process)."""

    def discard(self, h: Handle) -> None:
        """Make sure a node given up on (dead, hung, or started with others that failed) is
        gone. In-process nodes need nothing: dropping them is enough."""

    def shutdown(self) -> None:
        """Release the cluster."""


@dataclass
class _Done:
    value: Any = None
    error: BaseException | None = None


class LocalCluster(Cluster):
    name = "local"

    def start(self, role, index, cls, *args):
        return Handle(role, index, cls(*args))

    def call(self, h, method, *args, num_returns=1):
        if h.dead:
            done = _Done(error=NodeLost(h, "is dead"))
            return [done] * num_returns if num_returns > 1 else done
        failed = [a for a in args if isinstance(a, _Done) and a.error is not None]
        if failed:
            return [failed[0]] * num_returns if num_returns > 1 else failed[0]
        args = tuple(a.value if isinstance(a, _Done) else a for a in args)
        try:
            value = getattr(h.actor, method)(*args)
        except Exception as e:  # handed to get(), like a remote error
            done = _Done(error=e)
            return [done] * num_returns if num_returns > 1 else done
        if num_returns > 1:
            return [_Done(v) for v in value]
        return _Done(value)

    def get(self, h, future, timeout=None):
        if future.error is not None:
            raise future.error
        return future.value

    def kill(self, h):
        if h.dead:
            return
        h.dead = True
        # a shard loses what a killed process loses (``crash``); other nodes just close
        stop = getattr(h.actor, "crash", None) or getattr(h.actor, "close", None)
        if stop is not None:
            try:
                stop()
            except Exception:  # noqa: BLE001 - a dying node's last write may fail
                pass
        h.actor = None
