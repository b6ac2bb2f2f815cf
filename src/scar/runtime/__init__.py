"""Runtimes that move rows between parameter-server shards and workers: local (in-process)
and Ray (actors, real process kills). See coordinator.py for the iteration and recovery."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from .config import RUNTIMES, TrainConfig, build_split
from .coordinator import Failure, RuntimeFailure, Trainer
from .local import LocalCluster
from .ray_ps import RayCluster

__all__ = [
    "RUNTIMES",
    "Failure",
    "RuntimeFailure",
    "TrainConfig",
    "Trainer",
    "make_cluster",
    "train",
]


def make_cluster(runtime: str):
    return RayCluster() if runtime == "ray" else LocalCluster()


def train(cfg: TrainConfig, progress=None) -> dict[str, Any]:
    """Run ``cfg`` end to end; the result document of ``scar train``."""
    cfg.validate()
    split = build_split(cfg)
    tmp = None
    store = cfg.store
    if store is None:
        tmp = store = tempfile.mkdtemp(prefix="scar-train-")
    cluster = make_cluster(cfg.runtime)
    try:
        trainer = Trainer(cfg, split, cluster, store)
        return trainer.run(progress)
    finally:
        cluster.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
