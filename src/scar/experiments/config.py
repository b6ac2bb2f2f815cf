"""The configuration of one experiment cell (what the CLI's flags set) and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import validation as check
from ..algorithms import registry as models
from ..errors import ConfigError
from ..policies import POLICIES
from ..recovery import REBUILD, RECOVERY_MODES
from ..state import SHARDING_SCHEMES
from ..validation import DEFAULT_FRACTION, DEFAULT_POLICY, DEFAULT_RECOVERY, DEFAULT_SHARDING


@dataclass
class ExperimentConfig:
    model: str = "mlr"
    dataset: str = "digits"
    optimizer: str = "gd"
    shards: int = 8
    lost_shards: int | None = None
    lost_fraction: float | None = None
    checkpoint: str = DEFAULT_POLICY
    period: int | None = None  # None: max(2, round(T_clean / 10))
    fraction: float | None = None  # partial policies; None: DEFAULT_FRACTION
    recovery: str = DEFAULT_RECOVERY
    fail_at: int | None = None  # None: uniform in [0.2, 0.8] * T_clean, per trial
    trials: int = 10
    seed: int = 0
    epsilon: float | None = None  # None: the model's default
    max_factor: float = 3.0
    sharding: str = DEFAULT_SHARDING
    hyper: dict[str, Any] = field(default_factory=dict)

    def validate(self, flags: bool = False) -> ExperimentConfig:
        """Raise :class:`ConfigError` naming the first invalid setting: as its keyword
        (``lost_shards``), or as the command-line flag (``--lost-shards``) with ``flags``."""
        name = check.namer(flags)
        models.check_combination(self.model, self.dataset, self.optimizer, flags)
        check.whole(name("shards"), self.shards, ge=1)
        if (self.lost_shards is None) == (self.lost_fraction is None):
            raise ConfigError(
                f"give exactly one of {name('lost_shards')} K or {name('lost_fraction')} P"
            )
        if self.lost_shards is not None:
            shards = f"({name('shards')})"
            check.whole(name("lost_shards"), self.lost_shards, ge=1, le=self.shards, note=shards)
        else:
            check.fraction(name("lost_fraction"), self.lost_fraction)
            if round(self.lost_fraction * self.shards) < 1:
                check.fail(
                    name("lost_fraction"),
                    f"in ({0.5 / self.shards:g}, 1]",
                    self.lost_fraction,
                    note=f"to lose one of {self.shards} shards",
                )
        check.one_of(name("checkpoint"), self.checkpoint, POLICIES)
        check.optional(check.whole, name("period"), self.period, ge=1)
        check.optional(check.fraction, name("fraction"), self.fraction)
        check.one_of(name("recovery"), self.recovery, (*RECOVERY_MODES, REBUILD))
        if self.recovery == REBUILD and self.model not in models.REBUILD_MODELS:
            raise ConfigError(
                f"{name('recovery')} {REBUILD}: model {self.model} has nothing to recompute "
                f"its lost rows from (models with rebuild: {', '.join(models.REBUILD_MODELS)})"
            )
        check.optional(check.whole, name("fail_at"), self.fail_at, ge=1)
        check.whole(name("trials"), self.trials, ge=1)
        check.whole(name("seed"), self.seed, ge=0)
        check.optional(check.number, name("epsilon"), self.epsilon, gt=0, lt=1)
        check.number(name("max_factor"), self.max_factor, gt=1)
        check.one_of(name("sharding"), self.sharding, SHARDING_SCHEMES)
        return self

    @property
    def n_lost(self) -> int:
        if self.lost_shards is not None:
            return self.lost_shards
        return max(1, round(self.lost_fraction * self.shards))

    @property
    def policy_fraction(self) -> float | None:
        if self.checkpoint == "full":
            return None
        return DEFAULT_FRACTION if self.fraction is None else self.fraction
