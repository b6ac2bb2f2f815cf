"""The Ray cluster: shard servers and workers as Ray actors on a local, loopback-only cluster.

Every actor takes ``num_cpus=0`` (the 2-core machine runs several per core) and is never
restarted by Ray: the coordinator owns failure handling. A kill is a real ``SIGKILL`` of the
actor's process; its death surfaces as ``RayActorError`` on the next call (or a timeout), which
``get`` reports as :class:`~scar.runtime.local.NodeLost`.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

from ..errors import ScarError
from .local import Cluster, Handle, NodeLost

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def import_ray():
    """Import Ray with the environment that keeps it on 127.0.0.1."""
    for k, v in LOOPBACK_ENV.items():
        os.environ[k] = v
    try:
        import ray  # optional (scar[ray]) and heavy: imported when a Ray cluster is used
    except ImportError:
        raise ScarError(
            "the ray runtime needs Ray: pip install 'scar[ray]' (or ray==2.60.0)"
        ) from None
    return ray


KILLED: set[int] = set()  # pids of the processes a RayCluster killed on purpose
_PID = re.compile(r"Worker PID: (\d+)")


def quiet_kills() -> None:
    """Ray's driver prints a paragraph for every worker process that dies ("A worker died or was
    killed while executing a task by an unexpected system error ... Worker PID: P ..."). A kill
    of a shard is what a failure run is about, and the coordinator reports it, so the paragraphs
    about the processes in ``KILLED`` are dropped; any other death is still printed."""
    try:
        from ray._private import worker  # Ray's own (optional) internals, as import_ray
    except ImportError:  # another Ray: its messages stay as they are
        return
    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "scar_quiet", False):
        return

    def filtered(data, *args, **kwargs):
        if data.get("pid") == "raylet":
            lines = [
                line
                for line in data.get("lines", [])
                if not ((m := _PID.search(line)) and int(m.group(1)) in KILLED)
            ]
            if not lines:
                return None
            data = {**data, "lines": lines}
        return show(data, *args, **kwargs)

    filtered.scar_quiet = True
    worker.print_to_stdstream = filtered


def init_ray(num_cpus: int = 2) -> bool:
    """Start a local Ray cluster unless one is running; True if this call started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    return True


class RayCluster(Cluster):
    name = "ray"

    def __init__(self, num_cpus: int = 2) -> None:
        self.ray = import_ray()
        self._owner = init_ray(num_cpus)
        quiet_kills()
        self._classes: dict[type, Any] = {}

    def start(self, role, index, cls, *args):
        remote = self._classes.get(cls)
        if remote is None:
            remote = self._classes[cls] = self.ray.remote(num_cpus=0, max_restarts=0)(cls)
        return Handle(role, index, remote.remote(*args))

    def call(self, h, method, *args, num_returns=1):
        m = getattr(h.actor, method)
        if num_returns != 1:
            m = m.options(num_returns=num_returns)
        return m.remote(*args)

    def get(self, h, future, timeout=None):
        ex = self.ray.exceptions
        try:
            return self.ray.get(future, timeout=timeout)
        except ex.GetTimeoutError:
            raise NodeLost(h, f"did not answer within {timeout:g} s") from None
        except ex.RayActorError as e:
            if getattr(e, "actor_init_failed", False):  # its constructor raised: not a death
                last = str(e).strip().splitlines()[-1]
                # our own errors say what is wrong already: not their class's dotted name
                last = re.sub(r"^scar\.errors\.\w+: ", "", last)
                raise ScarError(f"{h.role} {h.index} failed to start: {last}") from None
            raise NodeLost(h, "died") from None
        except ex.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ex.RayActorError):
                raise NodeLost(h, "lost an input (a node it depends on died)") from None
            if isinstance(cause, ScarError):
                raise type(cause)(f"{h.role} {h.index}: {cause}") from None
            raise ScarError(f"{h.role} {h.index} failed: {type(cause).__name__}: {cause}") from None

    def kill(self, h):
        """SIGKILL the actor's process (its pid is cached at start), then drop the handle."""
        pid = h.meta.get("pid")
        if pid is None:
            pid = self.ray.get(h.actor.pid.remote(), timeout=30)
        KILLED.add(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        h.dead = True

    def discard(self, h: Handle) -> None:
        """Make sure a node given up on (dead or hung) is gone."""
        try:
            self.ray.kill(h.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def shutdown(self):
        if self._owner and self.ray.is_initialized():
            self.ray.shutdown()
