"""The Ray cluster: shard servers and workers as Ray actors, on a local, loopback-only cluster
started here or on an existing cluster joined at its address (``scar train --ray-address``).

Every actor takes ``num_cpus=0`` (the 2-core machine runs several per core), is spread over the
cluster's nodes (so one node's loss does not take every shard) and is never restarted by Ray:
the coordinator owns failure handling. A kill is a real ``SIGKILL`` of the actor's process; its
death surfaces as ``RayActorError`` on the next call (or a timeout), which ``get`` reports as
:class:`~scar.runtime.local.NodeLost`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
from typing import Any

from ..errors import ConfigError, ScarError
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


_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")
ADDRESS_FORM = "HOST:PORT (port 1..65535; the GCS address `ray start --head` prints, not 'auto')"
PROBE_SECONDS = 5.0  # at most this long (and never beyond the run's timeout) for the TCP probe


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray cluster's address ``HOST:PORT``; None if it is not one."""
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if m is None or not 1 <= int(m["port"]) <= 65535:
        return None
    return m["host"].strip("[]"), int(m["port"])


def join_ray(address: str, timeout: float = 60.0) -> None:
    """Connect this process, as a driver, to the Ray cluster whose GCS is at ``address``.

    Fails with one line (:class:`ConfigError`) if nothing answers there, if what answers is not
    a Ray cluster this driver can join, or if joining takes longer than ``timeout`` seconds.
    The driver must run on one of the cluster's nodes (Ray connects it to that node's raylet)."""
    where = f"--ray-address {address}"
    parsed = parse_address(address)
    if parsed is None:
        raise ConfigError(f"{where}: not {ADDRESS_FORM}")
    try:  # before importing Ray (seconds): a wrong address fails at once
        socket.create_connection(parsed, timeout=min(PROBE_SECONDS, timeout)).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ConfigError(f"{where}: no Ray cluster answers there ({reason})") from None
    ray = import_ray()
    if ray.is_initialized():
        raise ConfigError(f"{where}: this process is connected to a Ray cluster already")

    # ray.init blocks for minutes when what answers is not a Ray GCS, its C++ client printing a
    # warning every few seconds meanwhile: it runs on a thread, bounded by the timeout, muted
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - reported below, as one line
            outcome.append(e)

    thread = threading.Thread(target=connect, name="scar-join-ray", daemon=True)
    _run_muted(thread, timeout)
    if not outcome:
        raise ConfigError(
            f"{where}: no Ray cluster let this driver join within {timeout:g} s (is a Ray GCS "
            "listening there, and is this machine one of the cluster's nodes?)"
        )
    if outcome[0] is not None:
        raise ConfigError(f"{where}: cannot join the Ray cluster there ({_cause(outcome[0])})")
    if threading.current_thread() is threading.main_thread():
        # what ray.init does on the main thread (not on ours): SIGTERM ends the run in an orderly way
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


def _run_muted(thread: threading.Thread, timeout: float) -> None:
    """Run ``thread`` for at most ``timeout`` seconds with file descriptor 2 on /dev/null. If it
    is still running then, fd 2 stays there for the rest of this (failing) process, where that
    thread keeps writing, and Python's ``sys.stderr`` moves to a copy of the real stderr."""
    sys.stderr.flush()
    real = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    thread.start()
    thread.join(timeout)
    sys.stderr.flush()
    if thread.is_alive():
        sys.stderr = open(real, "w", buffering=1, errors="backslashreplace")  # noqa: SIM115
    else:
        os.dup2(real, 2)
        os.close(real)


def _cause(e: BaseException) -> str:
    """An exception of ray.init in one line: its type, its first line and its cause's."""
    parts = []
    while e is not None and len(parts) < 2:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        parts.append(f"{type(e).__name__}: {first}" if first else type(e).__name__)
        e = e.__cause__
    return "; ".join(parts)


def _node_id(_actor: Any) -> str:
    """Run inside an actor (``__ray_call__``): the id of the node its process runs on."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _node_ip(_actor: Any) -> str:
    """Run inside an actor: the IP address of its node (nodes on one machine share it)."""
    import ray

    return ray.util.get_node_ip_address()


def _sigkill_self(_actor: Any) -> None:
    """Run inside an actor: ``SIGKILL`` its own process (a kill on another machine)."""
    os.kill(os.getpid(), signal.SIGKILL)


class RayCluster(Cluster):
    """Shards and workers as Ray actors: on a local cluster started here (``address`` None) or
    on the existing cluster at ``address`` (``HOST:PORT``, its GCS), joined within ``timeout``
    seconds. A cluster joined is never shut down here: :meth:`shutdown` only disconnects."""

    name = "ray"

    def __init__(
        self, num_cpus: int = 2, address: str | None = None, timeout: float = 60.0
    ) -> None:
        self.address = address
        if address is None:
            self._owner = init_ray(num_cpus)
        else:
            join_ray(address, timeout)
            self._owner = True  # connected here: disconnect in shutdown (the cluster stays)
        self.ray = import_ray()
        quiet_kills()
        self._classes: dict[type, Any] = {}

    def start(self, role, index, cls, *args):
        remote = self._classes.get(cls)
        if remote is None:
            remote = self._classes[cls] = self.ray.remote(
                num_cpus=0, max_restarts=0, scheduling_strategy="SPREAD"
            )(cls)
        if self.address is not None:  # a joined cluster, maybe of many nodes: place explicitly
            remote = remote.options(scheduling_strategy=self._placement(index))
        return Handle(role, index, remote.remote(*args))

    def _placement(self, index: int) -> Any:
        """Where actor ``index`` of its role goes on a joined cluster: node ``index mod n`` of
        its ``n`` live nodes (in node-id order), as a hard node affinity. Ray's ``SPREAD`` is
        best effort: a raylet that cannot grant a spilled lease at once falls back to its own
        node, so on a loaded machine a whole role could land on one node. A hard affinity is
        kept; an actor pinned to a node that died meanwhile fails to start, which the
        coordinator sees as a lost node and replaces - on the nodes live then."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = sorted(n["NodeID"] for n in self.ray.nodes() if n.get("Alive"))
        if not alive:
            return "SPREAD"
        return NodeAffinitySchedulingStrategy(alive[index % len(alive)], soft=False)

    def node_of(self, h: Handle, timeout: float = 30.0) -> str:
        """The id (hex) of the Ray node whose process runs ``h``'s actor."""
        return self.get(h, h.actor.__ray_call__.remote(_node_id), timeout)

    def other_hosts(self) -> set[str]:
        """The IP addresses of the cluster's live nodes on machines other than this one."""
        here = self.ray.util.get_node_ip_address()
        hosts = {n["NodeManagerAddress"] for n in self.ray.nodes() if n.get("Alive")}
        return hosts - {here}

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
        """SIGKILL the actor's process (its pid is cached at start), then drop the handle. On
        another machine of a joined cluster the actor's process kills itself, and the kill
        waits (at most 30 s) until Ray sees it gone."""
        pid = h.meta.get("pid")
        if pid is None:
            pid = self.ray.get(h.actor.pid.remote(), timeout=30)
        KILLED.add(pid)
        try:
            elsewhere = self.address is not None and not self._on_this_machine(h)
        except NodeLost:  # dead already: nothing to kill
            elsewhere = None
        if elsewhere:
            self.ray.wait([h.actor.__ray_call__.remote(_sigkill_self)], timeout=30)
        elif elsewhere is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        h.dead = True

    def _on_this_machine(self, h: Handle) -> bool:
        """Whether ``h``'s actor runs on this machine (its node has this driver's IP address)."""
        ip = h.meta.get("ip")
        if ip is None:
            ip = h.meta["ip"] = self.get(h, h.actor.__ray_call__.remote(_node_ip), 30.0)
        return ip == self.ray.util.get_node_ip_address()

    def discard(self, h: Handle) -> None:
        """Make sure a node given up on (dead or hung) is gone."""
        try:
            self.ray.kill(h.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def shutdown(self):
        """Stop the local cluster started here, or disconnect from the cluster joined (which
        keeps running: ray.shutdown stops only what ray.init started)."""
        if self._owner and self.ray.is_initialized():
            self.ray.shutdown()
