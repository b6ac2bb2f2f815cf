"""The configuration of a distributed training run (``scar train``), validated up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import validation as check
from ..algorithms.registry import (
    MODEL_DATASETS,
    MODEL_OPTIMIZERS,
    REBUILD_MODELS,
    build,
    check_overrides,
)
from ..algorithms.sparse_lr import CriteoSynthConfig, SparseLR, SparseLRParams, criteo_synth
from ..errors import ConfigError, StoreError
from ..policies import POLICIES
from ..recovery import REBUILD, RECOVERY_MODES
from ..state import SHARDING_SCHEMES
from ..store.urls import check_url
from ..store.writer import PRIORITIES
from ..validation import (
    DEFAULT_FRACTION,
    DEFAULT_PERIOD,
    DEFAULT_POLICY,
    DEFAULT_RECOVERY,
    DEFAULT_SAVE_PRIORITY,
    DEFAULT_SHARDING,
)
from .ray_ps import ADDRESS_FORM, parse_address

RUNTIMES = ("local", "ray")
# the experiments' models and data sets, plus sparse LR on synthetic data (for scale)
# the models with a distributed split (runtime/registry.py); the CNN has none yet
_SPLIT_MODELS = ("mlr", "mf", "lda", "dlrm")
TRAIN_MODELS = {**{m: MODEL_DATASETS[m] for m in _SPLIT_MODELS}, "sparse-lr": ("criteo-synth",)}
OPTIMIZERS = {**{m: MODEL_OPTIMIZERS[m] for m in _SPLIT_MODELS}, "sparse-lr": ("sgd",)}
OPTIMIZERS["dlrm"] = ("adagrad", "adam")  # on the shards: Adagrad first, as DLRMs usually train


@dataclass
class TrainConfig:
    runtime: str = "local"
    ray_address: str | None = None  # ray: join the cluster there (HOST:PORT), else start one
    model: str = "mlr"
    dataset: str = "digits"
    optimizer: str | None = None  # mlr: gd or sgd; the model's only one otherwise
    shards: int = 4
    workers: int = 2
    checkpoint: str = DEFAULT_POLICY
    fraction: float | None = None  # partial policies; None: DEFAULT_FRACTION
    period: int = DEFAULT_PERIOD
    recovery: str = DEFAULT_RECOVERY
    store: str | None = None  # None: a temporary directory
    iterations: int = 100
    kill_at: int | None = None
    kill_shards: int | None = None  # with kill_at: 1 if not given
    kill_every: int | None = None
    kill_workers: int | None = None  # kill one worker every N iterations (it is replaced)
    seed: int = 0
    async_writes: bool = True
    save_priority: str = DEFAULT_SAVE_PRIORITY  # CPU priority of the shards' background saves
    fsync: bool = True
    timeout: float = 60.0  # seconds without an answer before a node counts as dead
    sharding: str = DEFAULT_SHARDING
    eval_every: int = 1  # objective every N iterations (and at the end)
    hyper: dict[str, Any] = field(default_factory=dict)  # model settings (lr, l2, batch_size)
    synth: dict[str, Any] = field(default_factory=dict)  # criteo-synth sizes

    def validate(self, flags: bool = False, custom: bool = False) -> TrainConfig:
        """Check every setting and fill in the defaults that depend on others (optimizer,
        kill_shards, fraction). Raise :class:`ConfigError` naming the first invalid setting:
        as its keyword (``kill_at``), or as the command-line flag (``--kill-at``) with
        ``flags``."""
        name = check.namer(flags)
        model = f"for model {self.model}"
        check.one_of(name("runtime"), self.runtime, RUNTIMES)
        if self.ray_address is not None:
            if self.runtime != "ray":
                raise ConfigError(f"{name('ray_address')} goes with {name('runtime')} ray")
            if parse_address(self.ray_address) is None:
                check.fail(name("ray_address"), ADDRESS_FORM, self.ray_address)
        if not custom:  # (a model of the user's own: its names are labels)
            check.one_of(name("model"), self.model, TRAIN_MODELS)
            check.one_of(name("dataset"), self.dataset, TRAIN_MODELS[self.model], note=model)
            self.optimizer = self.optimizer or OPTIMIZERS[self.model][0]
            check.one_of(name("optimizer"), self.optimizer, OPTIMIZERS[self.model], note=model)
        check.one_of(name("checkpoint"), self.checkpoint, POLICIES)
        check.one_of(name("recovery"), self.recovery, (*RECOVERY_MODES, REBUILD))
        if self.recovery == REBUILD and not custom and self.model not in REBUILD_MODELS:
            raise ConfigError(
                f"{name('recovery')} {REBUILD}: model {self.model} has nothing to recompute "
                f"its lost rows from (models with rebuild: {', '.join(REBUILD_MODELS)})"
            )
        check.one_of(name("sharding"), self.sharding, SHARDING_SCHEMES)
        check.one_of(name("save_priority"), self.save_priority, PRIORITIES)
        if self.kill_shards is not None and self.kill_at is None:  # else silently ignored
            raise ConfigError(
                f"{name('kill_shards')} goes with {name('kill_at')} "
                f"({name('kill_every')} kills one shard at a time)"
            )
        if self.kill_at is not None and self.kill_shards is None:
            self.kill_shards = 1
        for key in ("shards", "workers", "period", "iterations", "eval_every"):
            check.optional(check.whole, name(key), getattr(self, key), ge=1)
        if self.checkpoint == "full":
            self.fraction = None
        else:
            self.fraction = DEFAULT_FRACTION if self.fraction is None else self.fraction
            check.fraction(name("fraction"), self.fraction)
        if self.store is not None:
            try:
                check_url(self.store)
            except StoreError as e:
                raise ConfigError(f"{name('store')}: {e}") from None
        if self.kill_at is not None and self.kill_every is not None:
            raise ConfigError(
                f"give either {name('kill_at')} (with {name('kill_shards')}) "
                f"or {name('kill_every')}, not both"
            )
        up_to = f"({name('iterations')})"
        check.optional(
            check.whole, name("kill_at"), self.kill_at, ge=1, le=self.iterations, note=up_to
        )
        check.optional(check.whole, name("kill_every"), self.kill_every, ge=1)
        check.optional(check.whole, name("kill_workers"), self.kill_workers, ge=1)
        up_to = f"({name('shards')})"
        check.optional(
            check.whole, name("kill_shards"), self.kill_shards, ge=1, le=self.shards, note=up_to
        )
        check.positive(name("timeout"), self.timeout, note="(seconds)")
        check_overrides(self.hyper, flags)
        return self


def build_split(cfg: TrainConfig):
    """The algorithm of ``cfg`` and its worker/server split."""
    # imported here, not with this module: the splits load MF's and LDA's compiled (numba)
    # kernels, which the shard processes (they import scar.runtime) never need
    from .registry import split_of

    hyper = {k: v for k, v in cfg.hyper.items() if v is not None}
    if cfg.model == "sparse-lr":
        allowed = set(SparseLRParams.__dataclass_fields__) - {"seed"}
        unknown = sorted(set(hyper) - allowed)
        if unknown:  # as the registry's build says it of the other models
            raise ConfigError(
                f"model sparse-lr has no setting {unknown}; allowed: {sorted(allowed)}"
            )
        data = criteo_synth(CriteoSynthConfig(**cfg.synth, seed=cfg.seed))
        algorithm = SparseLR(data, SparseLRParams(**hyper, seed=cfg.seed))
    else:
        algorithm = build(cfg.model, cfg.dataset, cfg.optimizer, hyper, seed=cfg.seed)
    return split_of(cfg.model, algorithm)
