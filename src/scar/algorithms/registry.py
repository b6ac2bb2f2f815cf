"""The model registry: which models run on which datasets and optimisers, with their documented
default settings, and ``build`` (names -> the algorithm).

Settings are per model (and optimiser), never per experiment cell: every experiment on a model
uses the same learning rate, regularisation and convergence tolerance unless the user overrides
them on the command line.

| model/optimiser | one iteration   | hyper-parameters                | epsilon | smooth | f*                |
|-----------------|-----------------|---------------------------------|---------|--------|-------------------|
| mlr/gd          | full-batch step | lr 2.0, l2 1e-3                 | 0.01    | 1      | exact (L-BFGS)    |
| mlr/sgd         | minibatch step  | lr 1.0, l2 1e-3, batch 64       | 0.05    | 5      | exact (L-BFGS)    |
| mf/als          | ALS half-step   | rank 4, l2 5.0                  | 1e-6    | 1      | run to convergence|
| lda/gibbs       | Gibbs sweep     | K 20, alpha 0.1, beta 0.01      | 0.03    | 10     | 200-sweep run     |
| dlrm/adam       | minibatch step  | lr 0.01, batch 256, dim 16      | 0.05    | 5      | 300-step run      |
| dlrm/adagrad    | minibatch step  | lr 0.05, batch 256, dim 16      | 0.05    | 5      | 300-step run      |

Without a known optimum (MF, LDA), ``f*`` is the lowest smoothed objective of a clean run of
``long_run`` iterations from the same start (SPEC section 2), and T_clean is read off that run.
A deterministic algorithm (MF) stops that run once an iteration changes the objective by less
than 1e-13 relative: MovieLens-100k converges in ~230 half-steps, latest-small in ~1,500.

Why these values (chosen once, on MovieLens-100k and Reuters, for every experiment):

* **MF**: rank 4 with plain L2 = 5 gives the best held-out RMSE of the settings tried (0.911;
  rank 10 with l2 = 10: 0.919, rank 10 with ALS-WR l2 = 0.1: 0.915) and, on MovieLens-100k, a
  unique optimum that ALS reaches to 1e-11 within 300 half-steps from every seed. Rank 10 cuts
  inside a cluster of singular values of the rating matrix (30.8, 30.5, 29.2 ...): ALS then
  crawls along plateaus whose length depends on the seed (T_clean from 100 to 540 half-steps
  at the same epsilon), and different seeds end in different optima. With ALS-WR the rarely
  rated rows swing widely, and priority checkpoints spend their budget on them. ALS converges linearly, so a tight epsilon is
  cheap: 1e-6 puts T_clean at 90-115 half-steps on MovieLens-100k (checkpoint periods 9-12).
  Latest-small (9,066 movies, most rated a handful of times) converges far more slowly:
  T_clean ~1,000 half-steps at the same epsilon.
* **LDA**: a Gibbs chain is chaotic: moving 20 of Reuters' 84,010 tokens changes a third of
  the assignments 50 sweeps later, and the failed run's iterations to target vary by +-2.8
  (epsilon 0.02, 5-sweep window) or +-1.3 (epsilon 0.03, 10-sweep window) for that negligible
  perturbation. 0.03 with a 10-sweep window keeps that noise floor below the differences
  between strategies while T_clean (~78) still spans tens of sweeps; f* from 200 sweeps.
* **DLRM** (criteo-synth and MovieLens-100k clicks): 300 steps of 256 examples stay inside the
  first epoch (0.38 of criteo-synth's 200,000 examples, 0.77 of MovieLens' 100,000), so the
  evaluation sample's loss is mostly a loss on examples not yet trained on; later epochs
  memorise (MovieLens' user x item pairs: the training loss then falls without end). On
  criteo-synth the loss flattens by step ~150 (f* 0.355; the generator's true probabilities,
  dense features included, give 0.372); on MovieLens it still falls slowly at step 300 (0.533).
  epsilon 0.05 over a 5-step window puts T_clean at 126 / 248 steps (criteo-synth /
  MovieLens) with Adam, 171 / 247 with Adagrad, where the curve is flat: a failure moves the
  crossing by up to ~10 steps either way, and an early failure on criteo-synth now and then by
  ~45 (measured over 10 trials a cell). A 10-step window was no steadier; epsilon 0.1 puts
  criteo-synth's T_clean under 100 (85). Step sizes: Adam at 0.03 ends higher on criteo-synth
  (0.368 at step 300), Adagrad at 0.2 stalls at 0.48.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import datasets
from .. import validation as check
from ..errors import ConfigError
from .base import Algorithm

MODELS = ("mlr", "mf", "lda", "cnn", "dlrm")
MODEL_DATASETS = {
    "mlr": ("digits", "mnist", "bio", "covtype"),
    "mf": ("movielens-100k", "movielens-small", "jester"),
    "lda": ("reuters", "news-articles", "20newsgroups", "rcv1"),
    "cnn": ("mnist",),
    "dlrm": ("criteo-synth", "movielens-100k"),  # click data: scar.algorithms.dlrm.clicks
}
MODEL_OPTIMIZERS = {"mlr": ("gd", "sgd"), "mf": ("als",), "lda": ("gibbs",), "cnn": ("sgd", "adam")}
MODEL_OPTIMIZERS["dlrm"] = ("adam", "adagrad")


@dataclass(frozen=True)
class ModelDefaults:
    epsilon: float  # target: f* + epsilon * (f(0) - f*)
    smooth: int  # moving-average window of the objective used to detect the target
    hyper: dict[str, Any] = field(default_factory=dict)
    long_run: int = 0  # no known optimum: iterations of the clean run that defines f*


# MLR: step sizes chosen once per data set so that the clean run to the target takes
# ~100-200 iterations; l2 = 1e-3 makes the objective strongly convex (the bound needs it).
DEFAULTS: dict[tuple[str, str], ModelDefaults] = {
    ("mlr", "gd"): ModelDefaults(0.01, 1, {"lr": 2.0, "l2": 1e-3}),
    ("mlr", "sgd"): ModelDefaults(
        0.05, 5, {"lr": 1.0, "l2": 1e-3, "batch_size": 64, "lr_decay": 200.0}
    ),
    # MF-ALS, one iteration = one half-step; the objective is monotone: no smoothing.
    ("mf", "als"): ModelDefaults(1e-6, 1, {"rank": 4, "l2": 5.0}, long_run=3000),
    # LDA, one iteration = one Gibbs sweep; the chain's objective is noisy: 10-sweep average.
    ("lda", "gibbs"): ModelDefaults(
        0.03, 10, {"topics": 20, "alpha": 0.1, "beta": 0.01}, long_run=200
    ),
    # LeNet-5 (torch), one iteration = one minibatch step; f* from a long clean run.
    ("cnn", "sgd"): ModelDefaults(0.05, 5, {"lr": 0.05, "batch_size": 64}, long_run=400),
    ("cnn", "adam"): ModelDefaults(0.05, 5, {"lr": 1e-3, "batch_size": 64}, long_run=400),
    # DLRM (torch), one iteration = one minibatch step; f* from a 300-step run, inside the first
    # epoch of both data sets (see the module docstring)
    ("dlrm", "adam"): ModelDefaults(0.05, 5, {"lr": 1e-2, "batch_size": 256}, long_run=300),
    ("dlrm", "adagrad"): ModelDefaults(0.05, 5, {"lr": 5e-2, "batch_size": 256}, long_run=300),
}


# The models whose algorithm recomputes lost rows from the surviving state (``rebuild``):
# LDA's word-topic counts from the topic assignments, ALS's last-solved side from the other.
REBUILD_MODELS = ("mf", "lda")


def check_combination(model: str, dataset: str, optimizer: str, flags: bool = False) -> None:
    """Raise :class:`ConfigError` unless the model exists and runs on this data set and
    optimiser; the settings named as keywords, or as command-line flags with ``flags``."""
    name = check.namer(flags)
    check.one_of(name("model"), model, MODELS)
    check.one_of(name("dataset"), dataset, MODEL_DATASETS[model], note=f"for model {model}")
    check.one_of(name("optimizer"), optimizer, MODEL_OPTIMIZERS[model], note=f"for model {model}")


# the model settings a user may override on the command line that are whole numbers
WHOLE_SETTINGS = ("batch_size", "rank", "topics", "examples", "eval_size", "dim")


def check_overrides(hyper: dict[str, Any], flags: bool = False) -> None:
    """Check the model settings a user overrides (None: not given) before a model is built:
    l2 >= 0, the whole ones >= 1, every other > 0. Each model's constructor checks its own
    limits too (LDA: topics >= 2)."""
    name = check.namer(flags)
    for key, value in hyper.items():
        if value is None:
            continue
        if key == "l2":
            check.non_negative(name(key), value)
        elif key in WHOLE_SETTINGS:
            check.whole(name(key), value, ge=1)
        else:
            check.positive(name(key), value)


def defaults(model: str, optimizer: str) -> ModelDefaults:
    return DEFAULTS[(model, optimizer)]


# Step sizes depend on the scale of the data: MNIST's 785 features make full-batch GD at
# lr 2.0 overshoot in its first iterations (not a contraction, so no bound); lr 1.0 is stable.
# bio (74 dense features in [0, 1]) needs 0.5 for the same reason (at 1.0 and 2.0 the distance
# to the optimum grows in some iterations; at 0.5, c = 0.9995 and T_clean = 155).
DATASET_HYPER: dict[tuple[str, str, str], dict[str, Any]] = {
    ("mlr", "mnist", "gd"): {"lr": 1.0},
    ("mlr", "bio", "gd"): {"lr": 0.5},
}


def build(
    model: str, dataset: str, optimizer: str, hyper: dict[str, Any] | None = None, seed: int = 0
) -> Algorithm:
    """Build the algorithm with its defaults, overridden by ``hyper`` (None values ignored)."""
    check_combination(model, dataset, optimizer)
    params = dict(defaults(model, optimizer).hyper)
    params.update(DATASET_HYPER.get((model, dataset, optimizer), {}))
    params.update({k: v for k, v in (hyper or {}).items() if v is not None})
    # each model's module is imported when it is built: MLR needs scipy, MF and LDA load
    # compiled numba kernels, which a process that never builds them (a runtime's shard, the
    # command line's start) should not pay for
    if model == "mlr":
        from .mlr import MLR as cls
        from .mlr import MLRParams as params_cls

        fixed = {"optimizer": optimizer, "seed": seed}
    elif model == "mf":
        from .mf_als import MF as cls
        from .mf_als import MFParams as params_cls

        fixed = {"seed": seed}
    elif model == "lda":
        from .lda_gibbs import LDA as cls
        from .lda_gibbs import LDAParams as params_cls

        fixed = {"seed": seed}
    elif model == "cnn":  # torch: imported only when a torch model is built
        from .cnn import CNN as cls
        from .cnn import CNNParams as params_cls

        fixed = {"optimizer": optimizer, "seed": seed}
    elif model == "dlrm":  # torch; its data is click data (dlrm.clicks), not the registry's
        from .dlrm import DLRMModel as cls
        from .dlrm import DLRMParams as params_cls
        from .dlrm import clicks as load

        fixed = {"optimizer": optimizer, "seed": seed}
    else:  # pragma: no cover - check_combination guards
        raise ConfigError(f"unknown model {model!r}")
    if model != "dlrm":
        load = datasets.load
    allowed = set(params_cls.__dataclass_fields__) - {"optimizer", "seed"}
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(
            f"model {model} has no setting {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return cls(load(dataset), params_cls(**fixed, **params))
