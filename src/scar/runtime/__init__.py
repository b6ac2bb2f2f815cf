"""Runtimes that move rows between parameter-server shards and workers: local (in-process)
and Ray (actors, real process kills). See coordinator.py for the iteration and recovery."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from ..errors import ConfigError
from .config import RUNTIMES, TrainConfig, build_split
from .coordinator import Failure, RuntimeFailure, Trainer
from .local import LocalCluster
from .ray_ps import RayCluster
from .split import (
    AdagradRule,
    AdamRule,
    AddRule,
    DescentRule,
    ServerRule,
    Split,
    Update,
    WorkerPart,
)

__all__ = [
    "RUNTIMES",
    "AdagradRule",
    "AdamRule",
    "AddRule",
    "DescentRule",
    "ServerRule",
    "Split",
    "Update",
    "WorkerPart",
    "Failure",
    "RuntimeFailure",
    "TrainConfig",
    "Trainer",
    "make_cluster",
    "train",
]


def make_cluster(runtime: str, ray_address: str | None = None, timeout: float = 60.0):
    """The cluster of ``runtime``; for ray, the existing one at ``ray_address`` if given (joined
    within ``timeout`` seconds), else a local one started here."""
    if runtime == "ray":
        return RayCluster(address=ray_address, timeout=timeout)
    return LocalCluster()


def train(cfg: TrainConfig, progress=None, split: Split | None = None) -> dict[str, Any]:
    """Run ``cfg`` end to end; the result document of ``scar train``. ``split``: a model of
    your own (see docs/ps.md) instead of the built-in ``cfg.model``, whose name and data set
    then only label the result."""
    cfg.validate(custom=split is not None)
    if split is None:
        split = build_split(cfg)
    cluster = make_cluster(cfg.runtime, cfg.ray_address, cfg.timeout)
    tmp = None
    store = cfg.store
    if store is None:
        if cfg.ray_address is not None and (others := cluster.other_hosts()):
            cluster.shutdown()
            raise ConfigError(
                f"the Ray cluster at {cfg.ray_address} has nodes on other machines "
                f"({', '.join(sorted(others))}): give a store URL (--store) that every node "
                "can reach (a shared file system path or s3://)"
            )
        tmp = store = tempfile.mkdtemp(prefix="scar-train-")
    try:
        trainer = Trainer(cfg, split, cluster, store)
        return trainer.run(progress)
    finally:
        cluster.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
