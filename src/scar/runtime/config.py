"""The configuration of a distributed training run (``scar train``), validated up front."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..algorithms.registry import MODEL_DATASETS, MODEL_OPTIMIZERS, build
from ..algorithms.sparse_lr import CriteoSynthConfig, SparseLR, SparseLRParams, criteo_synth
from ..errors import ConfigError, StoreError
from ..policies import POLICIES
from ..recovery import RECOVERY_MODES
from ..state import SHARDING_SCHEMES
from ..store.urls import check_url
from ..store.writer import PRIORITIES

RUNTIMES = ("local", "ray")
# the experiments' models and data sets, plus sparse LR on synthetic data (for scale)
TRAIN_MODELS = {**MODEL_DATASETS, "sparse-lr": ("criteo-synth",)}
OPTIMIZERS = {**MODEL_OPTIMIZERS, "sparse-lr": ("sgd",)}


@dataclass
class TrainConfig:
    runtime: str = "local"
    model: str = "mlr"
    dataset: str = "digits"
    optimizer: str | None = None  # mlr: gd or sgd; the model's only one otherwise
    shards: int = 4
    workers: int = 2
    checkpoint: str = "priority"
    fraction: float | None = None  # default 1/8 for partial policies
    period: int = 10
    recovery: str = "partial"
    store: str | None = None  # None: a temporary directory
    iterations: int = 100
    kill_at: int | None = None
    kill_shards: int | None = None  # with kill_at: 1 if not given
    kill_every: int | None = None
    seed: int = 0
    async_writes: bool = True
    save_priority: str = "idle"  # CPU priority of the shards' background checkpoint threads
    fsync: bool = True
    timeout: float = 60.0  # seconds without an answer before a node counts as dead
    sharding: str = "range"
    eval_every: int = 1  # objective every N iterations (and at the end)
    hyper: dict[str, Any] = field(default_factory=dict)  # model settings (lr, l2, batch_size)
    synth: dict[str, Any] = field(default_factory=dict)  # criteo-synth sizes

    def validate(self) -> TrainConfig:
        _one_of("runtime", self.runtime, RUNTIMES)
        _one_of("model", self.model, tuple(TRAIN_MODELS))
        _one_of("dataset", self.dataset, TRAIN_MODELS[self.model], f" for model {self.model}")
        self.optimizer = self.optimizer or OPTIMIZERS[self.model][0]
        _one_of("optimizer", self.optimizer, OPTIMIZERS[self.model], f" for model {self.model}")
        _one_of("checkpoint", self.checkpoint, POLICIES)
        _one_of("recovery", self.recovery, RECOVERY_MODES)
        _one_of("sharding", self.sharding, SHARDING_SCHEMES)
        _one_of("save_priority", self.save_priority, PRIORITIES)
        if self.kill_shards is not None and self.kill_at is None:  # else silently ignored
            raise ConfigError(
                "--kill-shards goes with --kill-at (--kill-every kills one shard at a time)"
            )
        if self.kill_at is not None and self.kill_shards is None:
            self.kill_shards = 1
        for name in ("shards", "workers", "period", "iterations", "kill_shards", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint == "full":
            self.fraction = None
        else:
            self.fraction = 0.125 if self.fraction is None else self.fraction
            if math.isnan(self.fraction) or not 0 < self.fraction <= 1:
                raise ConfigError(f"--fraction must be in (0, 1], got {self.fraction:g}")
        if self.store is not None:
            try:
                check_url(self.store)
            except StoreError as e:
                raise ConfigError(f"--store: {e}") from None
        if self.kill_at is not None and self.kill_every is not None:
            raise ConfigError(
                "give either --kill-at (with --kill-shards) or --kill-every, not both"
            )
        if self.kill_at is not None and not 1 <= self.kill_at <= self.iterations:
            raise ConfigError(
                f"--kill-at must be in 1..{self.iterations} (--iterations), got {self.kill_at}"
            )
        if self.kill_every is not None and self.kill_every < 1:
            raise ConfigError(f"--kill-every must be >= 1, got {self.kill_every}")
        if self.kill_shards is not None and self.kill_shards > self.shards:
            raise ConfigError(
                f"--kill-shards must be in 1..{self.shards} (--shards), got {self.kill_shards}"
            )
        if not self.timeout > 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout:g}")
        for name, v in self.hyper.items():
            if v is not None and not (v > 0 or (name == "l2" and v == 0)):
                raise ConfigError(f"--{_flag(name)} must be > 0, got {v:g}")
        return self


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _one_of(name: str, value: Any, allowed: tuple, where: str = "") -> None:
    if value not in allowed:
        raise ConfigError(
            f"--{_flag(name)} {value!r} is not allowed{where}; allowed: {', '.join(allowed)}"
        )


def build_split(cfg: TrainConfig):
    """The algorithm of ``cfg`` and its worker/server split."""
    # imported here, not with this module: the splits load MF's and LDA's compiled (numba)
    # kernels, which the shard processes (they import scar.runtime) never need
    from .registry import split_of

    hyper = {k: v for k, v in cfg.hyper.items() if v is not None}
    if cfg.model == "sparse-lr":
        unknown = sorted(set(hyper) - (set(SparseLRParams.__dataclass_fields__) - {"seed"}))
        if unknown:
            raise ConfigError(f"model sparse-lr has no setting {unknown}")
        data = criteo_synth(CriteoSynthConfig(**cfg.synth, seed=cfg.seed))
        algorithm = SparseLR(data, SparseLRParams(**hyper, seed=cfg.seed))
    else:
        algorithm = build(cfg.model, cfg.dataset, cfg.optimizer, hyper, seed=cfg.seed)
    return split_of(cfg.model, algorithm)
