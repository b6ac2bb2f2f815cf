"""A whole run of a trainer: the kill schedule it injects, Ctrl-C, and the result document of
``scar train`` (the iterations themselves are the coordinator's)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[threading.Event]:
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


def run(trainer, progress=None) -> dict[str, Any]:
    """Run ``trainer`` (a :class:`~scar.runtime.coordinator.Trainer`) to its configured
    iterations: the kills it is told to inject, Ctrl-C handled (the run stops after the
    iteration in progress, closes its shards and reports), and the result document."""
    cfg = trainer.cfg
    rng = np.random.default_rng([cfg.seed, 0x4B11])
    killed: set[int] = set()
    wrng = np.random.default_rng([cfg.seed, 0x3017])  # which worker: its own stream
    killed_workers: set[int] = set()
    t0 = time.perf_counter()
    with stop_on_ctrl_c() as stop:
        while trainer.iteration < cfg.iterations and not stop.is_set():
            trainer.step()
            it = trainer.iteration
            due = (cfg.kill_at == it) or (
                cfg.kill_every is not None and it > 0 and it % cfg.kill_every == 0
            )
            if due and it not in killed and it < cfg.iterations:
                killed.add(it)
                n = cfg.kill_shards if cfg.kill_at is not None else 1
                trainer.kill(sorted(rng.choice(cfg.shards, size=n, replace=False).tolist()))
            every = cfg.kill_workers
            if every and 0 < it < cfg.iterations and it % every == 0 and it not in killed_workers:
                killed_workers.add(it)
                trainer.kill_workers([int(wrng.integers(len(trainer.workers)))])
            if progress is not None:
                progress(it, cfg.iterations)
        interrupted = trainer.iteration < cfg.iterations
        at = trainer.iteration
        if interrupted and not trainer.awaiting_recovery and trainer.trajectory[-1][0] != at:
            trainer.trajectory.append((at, trainer.objective()))  # where it stopped
        # a dead shard is one killed just before the stop, never recovered
        committed = trainer.close(dead_ok=interrupted)
    wall = time.perf_counter() - t0
    cpu = trainer.lost_background_cpu + trainer.background_cpu(trainer.shards)
    return result(trainer, wall, committed, cpu, interrupted)


def result(
    trainer,
    wall: float,
    committed: list[int],
    background_cpu_seconds: float = 0.0,
    interrupted: bool = False,
) -> dict[str, Any]:
    its, objs = zip(*trainer.trajectory, strict=True)
    return {
        "config": asdict(trainer.cfg),
        "interrupted": interrupted,  # stopped by Ctrl-C before cfg.iterations
        "objective": list(objs),
        "iterations": list(its),
        "objective_final": objs[-1],
        "failures": [asdict(f) for f in trainer.failures],
        "worker_failures": [asdict(f) for f in trainer.worker_failures],
        "totals": {
            "iterations": trainer.iteration,
            "steps": trainer.steps,
            "failures": len(trainer.failures),
            "worker_failures": len(trainer.worker_failures),
            "wall_seconds": wall,
            "checkpoint_seconds": trainer.checkpoint_seconds,
            "checkpoint_bytes": trainer.checkpoint_bytes,
            "background_checkpoint_cpu_seconds": background_cpu_seconds,
            "recovery_seconds": sum(
                f.detection_seconds + f.restore_seconds for f in trainer.failures
            ),
            "committed_iteration": min(committed),
        },
    }
