"""The configuration of one experiment cell (what the CLI's flags set) and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..algorithms import registry as models
from ..errors import ConfigError
from ..policies import POLICIES
from ..recovery import RECOVERY_MODES
from ..state import SHARDING_SCHEMES

DEFAULT_FRACTION = 1 / 8


@dataclass
class ExperimentConfig:
    model: str = "mlr"
    dataset: str = "digits"
    optimizer: str = "gd"
    shards: int = 8
    lost_shards: int | None = None
    lost_fraction: float | None = None
    checkpoint: str = "priority"
    period: int | None = None  # None: max(2, round(T_clean / 10))
    fraction: float | None = None  # partial policies; None: 1/8
    recovery: str = "partial"
    fail_at: int | None = None  # None: uniform in [0.2, 0.8] * T_clean, per trial
    trials: int = 10
    seed: int = 0
    epsilon: float | None = None  # None: the model's default
    max_factor: float = 3.0
    sharding: str = "range"
    hyper: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> ExperimentConfig:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        models.check_combination(self.model, self.dataset, self.optimizer)
        _whole(self.shards, "shards", 1)
        if (self.lost_shards is None) == (self.lost_fraction is None):
            raise ConfigError("give exactly one of lost-shards K or lost-fraction P")
        if self.lost_shards is not None:
            _whole(self.lost_shards, "lost-shards", 1)
            if self.lost_shards > self.shards:
                raise ConfigError(
                    f"lost-shards must be between 1 and shards ({self.shards}), got {self.lost_shards}"
                )
        else:
            _fraction(self.lost_fraction, "lost-fraction")
            if round(self.lost_fraction * self.shards) < 1:
                raise ConfigError(
                    f"lost-fraction {self.lost_fraction:g} of {self.shards} shards loses no shard; "
                    f"use at least {1 / self.shards:g}"
                )
        if self.checkpoint not in POLICIES:
            raise ConfigError(
                f"unknown checkpoint policy {self.checkpoint!r}; allowed: {', '.join(POLICIES)}"
            )
        if self.period is not None:
            _whole(self.period, "period", 1)
        if self.fraction is not None:
            _fraction(self.fraction, "fraction")
        if self.recovery not in RECOVERY_MODES:
            raise ConfigError(
                f"unknown recovery {self.recovery!r}; allowed: {', '.join(RECOVERY_MODES)}"
            )
        if self.fail_at is not None:
            _whole(self.fail_at, "fail-at", 1)
        _whole(self.trials, "trials", 1)
        _whole(self.seed, "seed", 0)
        if self.epsilon is not None and not 0 < self.epsilon < 1:
            raise ConfigError(f"epsilon must be in (0, 1), got {self.epsilon:g}")
        if not self.max_factor > 1:
            raise ConfigError(f"max-factor must be > 1, got {self.max_factor:g}")
        if self.sharding not in SHARDING_SCHEMES:
            raise ConfigError(
                f"unknown sharding {self.sharding!r}; allowed: {', '.join(SHARDING_SCHEMES)}"
            )
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


def _whole(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")


def _fraction(value: Any, name: str) -> None:
    if not isinstance(value, float | int) or math.isnan(value) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
