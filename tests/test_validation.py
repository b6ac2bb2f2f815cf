"""One vocabulary for every parameter check (scar.validation): each message names the parameter,
what is allowed and the value given, in one shape, wherever the check is made."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from scar import validation as check
from scar.algorithms import registry
from scar.algorithms.lda_gibbs import LDA, LDAParams
from scar.algorithms.mf_als import MF, MFParams
from scar.algorithms.mlr import MLR, MLRParams
from scar.algorithms.sparse_lr import CriteoSynthConfig, SparseLR, SparseLRParams
from scar.checkpoint import Checkpointer
from scar.cli import main
from scar.errors import ConfigError
from scar.experiments.config import ExperimentConfig
from scar.policies import PriorityPolicy, RandomPolicy, make_policy
from scar.recovery import check_mode, check_shards
from scar.runtime.config import TrainConfig
from scar.state import Sharding, State
from scar.store.store import StoreOptions

SHAPE = re.compile(r"^(--)?[\w-]+ must be .+, got .+$")
NAN, INF = float("nan"), float("inf")


def message(call, *args, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        call(*args, **kw)
    return str(e.value)


# -- the checks -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,expected",
    [
        (lambda: check.whole("shards", 0, ge=1), "shards must be a whole number >= 1, got 0"),
        (lambda: check.whole("n", 9, le=8), "n must be a whole number <= 8, got 9"),
        (lambda: check.whole("n", "3"), "n must be a whole number, got '3'"),
        (
            lambda: check.whole("hash_bits", 40, ge=4, le=30),
            "hash_bits must be a whole number in 4..30, got 40",
        ),
        (lambda: check.whole("period", True, ge=1), "period must be a whole number >= 1, got True"),
        (lambda: check.whole("period", 2.0, ge=1), "period must be a whole number >= 1, got 2.0"),
        (lambda: check.positive("--lr", NAN), "--lr must be a finite number > 0, got nan"),
        (lambda: check.positive("lr", INF), "lr must be a finite number > 0, got inf"),
        (lambda: check.positive("lr", 0), "lr must be a finite number > 0, got 0"),
        (lambda: check.positive("lr", False), "lr must be a finite number > 0, got False"),
        (lambda: check.non_negative("l2", -1.0), "l2 must be a finite number >= 0, got -1.0"),
        (lambda: check.fraction("fraction", 1.5), "fraction must be in (0, 1], got 1.5"),
        (lambda: check.fraction("fraction", 0), "fraction must be in (0, 1], got 0"),
        (lambda: check.fraction("fraction", "0.5"), "fraction must be in (0, 1], got '0.5'"),
        (lambda: check.number("eps", 1.0, gt=0, lt=1), "eps must be in (0, 1), got 1.0"),
        (lambda: check.number("t", 1, ge=0, lt=1), "t must be in [0, 1), got 1"),
        (lambda: check.number("m", 1.0, gt=1), "m must be a finite number > 1, got 1.0"),
        (lambda: check.number("m", 2.0, le=1), "m must be a finite number <= 1, got 2.0"),
        (
            lambda: check.one_of("mode", "half", ("full", "partial")),
            "mode must be one of full or partial, got 'half'",
        ),
        (
            lambda: check.one_of("p", "x", ("a", "b", "c"), note="for model m"),
            "p must be one of a, b or c for model m, got 'x'",
        ),
        (lambda: check.one_of("optimizer", "gd", ("als",)), "optimizer must be als, got 'gd'"),
        (lambda: check.one_of("mode", None, ("full",)), "mode must be full, got None"),
        (
            lambda: check.optional(check.whole, "kill_at", 9, ge=1, le=5, note="(iterations)"),
            "kill_at must be a whole number in 1..5 (iterations), got 9",
        ),
    ],
)
def test_each_check_says_what_is_allowed_and_what_was_given(call, expected):
    assert message(call) == expected


def test_accepted_values_come_back_unchanged():
    assert check.whole("n", np.int64(3), ge=1) == 3  # numpy integers are whole numbers
    assert check.fraction("r", np.float32(0.5)) == np.float32(0.5)
    assert check.positive("lr", 2) == 2
    assert check.one_of("mode", "full", ("full", "partial")) == "full"
    assert check.optional(check.whole, "period", None, ge=1) is None
    assert check.optional(check.fraction, "fraction", 1.0) == 1.0


def test_values_are_shown_as_written_and_shortened_when_long():
    assert (
        message(check.positive, "lr", np.float32(-0.5))
        == "lr must be a finite number > 0, got -0.5"
    )
    text = message(check.one_of, "dataset", "x" * 500, ("a", "b"))
    assert text.startswith("dataset must be one of a or b, got 'xxx") and text.endswith("...")
    assert len(text) < 120


def test_flags_and_keywords():
    assert check.flag("lost_shards") == "--lost-shards"
    assert check.namer(True)("kill_at") == "--kill-at"
    assert check.namer(False)("kill_at") == "kill_at"


def test_validation_imports_nothing_of_scar_but_its_errors():
    """It sits below every layer, so every layer may use it."""
    tree = ast.parse(Path(check.__file__).read_text())
    imported = {
        (node.level, node.module) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    ours = {(level, module) for level, module in imported if level or module.startswith("scar")}
    assert ours == {(1, "errors")}


def test_every_default_shared_by_modules_is_defined_once():
    from scar.runtime.nodes import CheckpointConfig

    assert ExperimentConfig().policy_fraction == check.DEFAULT_FRACTION == 1 / 8
    assert TrainConfig().validate().fraction == check.DEFAULT_FRACTION
    assert CheckpointConfig().fraction == check.DEFAULT_FRACTION
    assert TrainConfig().period == CheckpointConfig().period == check.DEFAULT_PERIOD
    assert StoreOptions().keep_last == CheckpointConfig().keep_last == check.DEFAULT_KEEP_LAST
    assert ExperimentConfig().checkpoint == TrainConfig().checkpoint == check.DEFAULT_POLICY
    assert ExperimentConfig().recovery == TrainConfig().recovery == check.DEFAULT_RECOVERY
    assert ExperimentConfig().sharding == TrainConfig().sharding == check.DEFAULT_SHARDING
    assert TrainConfig().save_priority == CheckpointConfig().background_priority


# -- every place a user's parameter is checked uses it ------------------------------------------
def experiment(**kw):
    base = dict(model="mlr", dataset="digits", optimizer="gd", shards=8, lost_shards=2)
    return ExperimentConfig(**{**base, **kw}).validate()


def train(**kw):
    return TrainConfig(**kw).validate()


def state(**kw):
    return State({"w": np.zeros((4, 2), np.float32)}, **kw)


def recover(shards):
    ckpt = Checkpointer(state(n_shards=4), make_policy("full", 5))
    ckpt.save_all(0)
    ckpt.recover(shards)


PLACES = [
    # experiments
    (experiment, dict(fraction=1.5), "fraction must be in (0, 1], got 1.5"),
    (experiment, dict(fraction=NAN), "fraction must be in (0, 1], got nan"),
    (experiment, dict(lost_shards=9), "lost_shards must be a whole number in 1..8 (shards), got 9"),
    (
        experiment,
        dict(lost_shards=None, lost_fraction=0.01),
        "lost_fraction must be in (0.0625, 1] to lose one of 8 shards, got 0.01",
    ),
    (experiment, dict(period=0), "period must be a whole number >= 1, got 0"),
    (experiment, dict(trials=2.5), "trials must be a whole number >= 1, got 2.5"),
    (experiment, dict(seed=-1), "seed must be a whole number >= 0, got -1"),
    (experiment, dict(epsilon=1.0), "epsilon must be in (0, 1), got 1.0"),
    (experiment, dict(max_factor=INF), "max_factor must be a finite number > 1, got inf"),
    (experiment, dict(checkpoint="x"), "checkpoint must be one of full, priority, round-robin or"),
    (experiment, dict(recovery="x"), "recovery must be one of full, partial or rebuild, got 'x'"),
    (experiment, dict(sharding="x"), "sharding must be one of range or hash, got 'x'"),
    (experiment, dict(dataset="x"), "dataset must be one of digits, mnist, bio or covtype for"),
    # runtime
    (train, dict(runtime="mpi"), "runtime must be one of local or ray, got 'mpi'"),
    (
        train,
        dict(model="mf", dataset="x"),
        "dataset must be one of movielens-100k, movielens-small",
    ),
    (train, dict(fraction=0.0), "fraction must be in (0, 1], got 0.0"),
    (train, dict(workers=0), "workers must be a whole number >= 1, got 0"),
    (
        train,
        dict(kill_at=11, iterations=10),
        "kill_at must be a whole number in 1..10 (iterations)",
    ),
    (train, dict(timeout=NAN), "timeout must be a finite number > 0 (seconds), got nan"),
    (train, dict(save_priority="high"), "save_priority must be one of normal or idle, got 'high'"),
    (train, dict(hyper={"lr": -1.0}), "lr must be a finite number > 0, got -1.0"),
    (train, dict(hyper={"l2": NAN}), "l2 must be a finite number >= 0, got nan"),
    (train, dict(hyper={"rank": 0}), "rank must be a whole number >= 1, got 0"),
    # policies
    (make_policy, dict(name="sometimes", period=10), "policy must be one of full, priority,"),
    (make_policy, dict(name="full", period=0), "period must be a whole number >= 1, got 0"),
    (make_policy, dict(name="random", period=8), "fraction must be in (0, 1] for policy 'random'"),
    (PriorityPolicy, dict(period=8, fraction=NAN), "fraction must be in (0, 1], got nan"),
    (RandomPolicy, dict(period=8.0, fraction=0.5), "period must be a whole number >= 1, got 8.0"),
    # recovery
    (check_mode, dict(mode="sideways"), "mode must be one of full or partial, got 'sideways'"),
    (recover, dict(shards=[1, 4]), "lost_shards must be shard ids in 0..3, got [1, 4]"),
    (check_shards, dict(state=state(n_shards=2), shards=[-1]), "lost_shards must be shard ids in"),
    # algorithms
    (MLR, dict(data=None, params=MLRParams(lr=NAN)), "lr must be a finite number > 0, got nan"),
    (MLR, dict(data=None, params=MLRParams(l2=-1e-3)), "l2 must be a finite number >= 0, got"),
    (MLR, dict(data=None, params=MLRParams(batch_size=0)), "batch_size must be a whole number"),
    (MLR, dict(data=None, params=MLRParams(optimizer="adam")), "optimizer must be one of gd or"),
    (MF, dict(data=None, params=MFParams(rank=2.0)), "rank must be a whole number >= 1, got 2.0"),
    (MF, dict(data=None, params=MFParams(l2=0)), "l2 must be a finite number > 0, got 0"),
    (MF, dict(data=None, params=MFParams(test_fraction=1)), "test_fraction must be in [0, 1), got"),
    (LDA, dict(corpus=None, params=LDAParams(topics=1)), "topics must be a whole number >= 2"),
    (LDA, dict(corpus=None, params=LDAParams(beta=0.0)), "beta must be a finite number > 0, got"),
    (SparseLR, dict(data=None, params=SparseLRParams(lr=0)), "lr must be a finite number > 0"),
    (
        lambda **kw: CriteoSynthConfig(**kw).validate(),
        dict(hash_bits=40),
        "hash_bits must be a whole number in 4..30, got 40",
    ),
    (
        registry.check_combination,
        dict(model="svm", dataset="digits", optimizer="gd"),
        "model must be one of mlr, mf, lda, cnn or dlrm, got 'svm'",
    ),
    (registry.check_overrides, dict(hyper={"batch_size": 0}), "batch_size must be a whole number"),
    # store options
    (StoreOptions, dict(keep_last=0), "keep_last must be a whole number >= 1 or None, got 0"),
    (StoreOptions, dict(compact_after=1), "compact_after must be a whole number >= 2, got 1"),
    (StoreOptions, dict(chunk_bytes=0), "chunk_bytes must be a whole number >= 1, got 0"),
    (StoreOptions, dict(compression="lz4"), "compression must be zstd or None, got 'lz4'"),
    # state
    (Sharding, dict(n_rows=10, n_shards=0), "n_shards must be a whole number >= 1, got 0"),
    (Sharding, dict(n_rows=10, n_shards=2, scheme="x"), "scheme must be one of range or hash"),
    (lambda **kw: Sharding(10, 4).rows_of(**kw), dict(shards=[4]), "shards must be shard ids in"),
    (state, dict(n_shards=0), "n_shards must be a whole number >= 1, got 0"),
]


@pytest.mark.parametrize("call,kwargs,fragment", PLACES)
def test_every_place_uses_the_one_message_shape(call, kwargs, fragment):
    text = message(call, **kwargs)
    assert fragment in text
    assert SHAPE.match(text), text


# -- the command line: the flag as typed, one line, exit status 2 -------------------------------
@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["experiment", "--lost-shards", "2", "--fraction", "1.5"],
            "--fraction must be in (0, 1], got 1.5",
        ),
        (["experiment", "--lost-shards", "2", "--lr", "inf"], "--lr must be a finite number > 0"),
        (
            ["experiment", "--lost-shards", "9"],
            "--lost-shards must be a whole number in 1..8 (--shards), got 9",
        ),
        (["train", "--timeout", "inf"], "--timeout must be a finite number > 0 (seconds), got inf"),
        (
            ["train", "--kill-at", "500"],
            "--kill-at must be a whole number in 1..100 (--iterations)",
        ),
        (["train", "--model", "mf", "--rank", "0"], "--rank must be a whole number >= 1, got 0"),
        (["reproduce", "--jobs", "0"], "--jobs must be a whole number >= 1, got 0"),
        (["datasets", "show", "nope"], "NAME must be one of "),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(tmp_path, capsys, args, expected):
    out = tmp_path / "r.json"
    extra = [] if args[0] in ("reproduce", "datasets") else ["-o", str(out)]
    extra += ["--out", str(tmp_path / "o")] if args[0] == "reproduce" else []
    with pytest.raises(SystemExit) as e:
        main([*args, *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("scar: error: "), err
    assert expected in lines[0] and SHAPE.match(lines[0].removeprefix("scar: error: "))
    assert not out.exists()
