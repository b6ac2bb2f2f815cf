"""Shared set-up of the runtime tests: small MLR / sparse-LR trainers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from scar.runtime import TrainConfig, Trainer, build_split
from scar.store import open_store
from scar.store.urls import shard_url


def make_trainer(cluster, tmp_path, **kw) -> Trainer:
    opts = dict(
        runtime=cluster.name,
        shards=4,
        workers=2,
        iterations=30,
        fsync=False,
        store=str(tmp_path / "store"),
        timeout=60.0,
    )
    opts.update(kw)
    cfg = TrainConfig(**opts).validate()
    return Trainer(cfg, build_split(cfg), cluster, cfg.store)


def run_steps(trainer: Trainer, n: int) -> None:
    for _ in range(n):
        trainer.step()


def saved_rows(store: str, shard: int, table: str = "weights") -> np.ndarray:
    s = open_store(shard_url(store, shard), readonly=True)
    try:
        return s.read_rows(table)
    finally:
        s.close()


def saved_iterations(trainer: Trainer) -> list[list[int]]:
    """Per shard, the iterations of the versions its store keeps (its writes waited for)."""
    out = []
    for k, h in enumerate(trainer.shards):
        trainer.cluster.get(h, trainer.cluster.call(h, "sync"))
        s = open_store(shard_url(trainer.cfg.store, k), readonly=True)
        try:
            out.append(sorted({v.iteration for v in s.versions()}))
        finally:
            s.close()
    return out


def close(trainer: Trainer) -> None:
    try:
        trainer.close()
    except Exception:  # noqa: BLE001 - a test that broke a node
        pass


def lda_counts(trainer: Trainer) -> tuple[np.ndarray, np.ndarray]:
    """(word-topic, document-topic) counts of the workers' topic assignments z."""
    from scar.algorithms.lda_gibbs import _count

    alg = trainer.split.algorithm
    z = np.concatenate([s["z"] for s in trainer.worker_states()])
    nwt = np.zeros((alg.corpus.n_words, alg.p.topics), np.float32)
    ndt = np.zeros((alg.corpus.n_docs, alg.p.topics), np.int32)
    _count(alg.words, alg.docs, z, nwt, ndt)
    return nwt, ndt


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent pid, process
    group, session, ...), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def live_processes() -> dict[int, list[str]]:
    """pid -> ``stat_fields`` of every process that has not exited (a zombie not yet reaped
    by its parent counts as exited)."""
    out = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        fields = stat_fields(d)
        if fields is not None and fields[0] not in "ZX":
            out[int(d)] = fields
    return out


def scar_train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``scar train ARGS`` in a new process (its output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "scar.cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
