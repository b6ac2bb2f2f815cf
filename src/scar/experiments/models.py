"""Which models run on which datasets, with their documented default settings.

Settings are per model (and optimiser), never per experiment cell: every experiment on a model
uses the same learning rate, regularisation and convergence tolerance unless the user overrides
them on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import datasets
from ..algorithms.base import Algorithm
from ..errors import ConfigError

MODELS = ("mlr",)
MODEL_DATASETS = {"mlr": ("digits", "mnist")}
MODEL_OPTIMIZERS = {"mlr": ("gd", "sgd")}


@dataclass(frozen=True)
class ModelDefaults:
    epsilon: float  # target: f* + epsilon * (f(0) - f*)
    smooth: int  # moving-average window of the objective used to detect the target
    hyper: dict[str, Any] = field(default_factory=dict)


# MLR: step sizes chosen once per data set so that the clean run to the target takes
# ~100-200 iterations; l2 = 1e-3 makes the objective strongly convex (the bound needs it).
DEFAULTS: dict[tuple[str, str], ModelDefaults] = {
    ("mlr", "gd"): ModelDefaults(0.01, 1, {"lr": 2.0, "l2": 1e-3}),
    ("mlr", "sgd"): ModelDefaults(
        0.05, 5, {"lr": 1.0, "l2": 1e-3, "batch_size": 64, "lr_decay": 200.0}
    ),
}


def check_combination(model: str, dataset: str, optimizer: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")
    if dataset not in MODEL_DATASETS[model]:
        known = dataset in datasets.DATASETS
        what = "cannot be used with" if known else "is unknown for"
        raise ConfigError(
            f"dataset {dataset!r} {what} model {model}; allowed: {', '.join(MODEL_DATASETS[model])}"
        )
    if optimizer not in MODEL_OPTIMIZERS[model]:
        raise ConfigError(
            f"optimizer {optimizer!r} is not available for model {model}; "
            f"allowed: {', '.join(MODEL_OPTIMIZERS[model])}"
        )


def defaults(model: str, optimizer: str) -> ModelDefaults:
    return DEFAULTS[(model, optimizer)]


def build(
    model: str, dataset: str, optimizer: str, hyper: dict[str, Any] | None = None, seed: int = 0
) -> Algorithm:
    """Build the algorithm with its defaults, overridden by ``hyper`` (None values ignored)."""
    check_combination(model, dataset, optimizer)
    params = dict(defaults(model, optimizer).hyper)
    params.update({k: v for k, v in (hyper or {}).items() if v is not None})
    if model == "mlr":
        from ..algorithms.mlr import MLR, MLRParams

        allowed = set(MLRParams.__dataclass_fields__) - {"optimizer", "seed"}
        unknown = set(params) - allowed
        if unknown:
            raise ConfigError(
                f"model mlr has no setting {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return MLR(datasets.load(dataset), MLRParams(optimizer=optimizer, seed=seed, **params))
    raise ConfigError(f"unknown model {model!r}")  # pragma: no cover - check_combination guards
