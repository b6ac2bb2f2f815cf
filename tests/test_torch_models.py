"""The torch models of the experiments (issue 23) as Algorithms: LeNet-5 on MNIST here, and the
contract every torch model keeps (the DLRM's own tests: test_dlrm.py).

What the experiment harness relies on: ``start`` gives the same tables every time, an
iteration is a deterministic function of (tables, step counts, iteration) so the harness's
replay of the clean run is exact, the tables are the live tensors (a recovery writes into the
network), and the optimizer's state follows its parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from scar.algorithms import registry  # noqa: E402
from scar.experiments.cell import run_cell  # noqa: E402
from scar.experiments.config import ExperimentConfig  # noqa: E402
from scar.state import State  # noqa: E402

SMALL = {"examples": 600, "eval_size": 200, "batch_size": 32}
DLRM_SMALL = {"examples": 2000, "eval_size": 300, "batch_size": 64, "dim": 8}
MODELS = [
    ("cnn", "mnist", "sgd", SMALL),
    ("cnn", "mnist", "adam", SMALL),
    ("dlrm", "criteo-synth", "adam", DLRM_SMALL),
    ("dlrm", "movielens-100k", "adagrad", DLRM_SMALL),
]


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: f"{m[0]}-{m[1]}-{m[2]}")
def model(request):
    name, dataset, optimizer, small = request.param
    return registry.build(name, dataset, optimizer, dict(small))


@pytest.fixture(scope="module", params=["sgd", "adam"])
def cnn(request):
    return registry.build("cnn", "mnist", request.param, dict(SMALL))


def run(algo, iterations):
    tables = algo.start()
    for it in range(1, iterations + 1):
        algo.step(tables, it)
    return {n: t.copy() for n, t in tables.items()}, algo.aux_state()


def test_start_and_steps_are_deterministic(model):
    a, aux_a = run(model, 6)
    b, aux_b = run(model, 6)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    for name in aux_a:
        np.testing.assert_array_equal(aux_a[name], aux_b[name])
    first = model.start()
    assert any(not np.array_equal(first[n], a[n]) for n in a)  # training moved the tables


def test_a_replayed_state_continues_exactly_like_the_run_it_came_from(model):
    """The harness puts a recorded state and aux back (``State.assign``, ``skip_to``) and
    goes on: bitwise the same as the run that was not interrupted."""
    straight, _ = run(model, 8)
    mid, aux = run(model, 4)
    tables = model.start()
    state = State(tables, n_shards=8)
    state.assign(mid)
    model.skip_to(4, aux)
    for it in range(5, 9):
        model.step(state, it)
    for name in straight:
        assert state[name].tobytes() == straight[name].tobytes(), name


def test_tables_are_the_network_and_optimizer_state_follows(cnn):
    tables = cnn.start()
    follows = cnn.follows()
    if cnn.optimizer_name == "adam":
        assert (
            "conv1.weight@exp_avg" in follows and follows["conv1.weight@exp_avg"] == "conv1.weight"
        )
    else:
        assert follows["fc1.weight@momentum_buffer"] == "fc1.weight"
    f0 = cnn.objective(tables)
    tables["fc3.bias"][0, 0] = 50.0  # class 0 always wins, through the network: loss jumps
    assert cnn.objective(tables) > f0 + 1.0


def test_the_objective_falls_with_training(cnn):
    tables = cnn.start()
    f0 = cnn.objective(tables)
    for it in range(1, 41):
        cnn.step(tables, it)
    assert cnn.objective(tables) < 0.9 * f0


@pytest.mark.parametrize(
    "name, dataset, small, check",
    [
        ("cnn", "mnist", SMALL, {"parameters": 61706}),
        ("dlrm", "criteo-synth", DLRM_SMALL, {"dataset": "criteo-synth", "examples": 2000}),
    ],
)
def test_an_experiment_cell_runs_with_partial_recovery_and_is_reproducible(
    name, dataset, small, check
):
    cfg = dict(
        model=name, dataset=dataset, optimizer="adam", trials=2, shards=8, lost_shards=2,
        checkpoint="priority", recovery="partial", hyper=dict(small),
    )  # fmt: skip
    a = run_cell(ExperimentConfig(**cfg))
    b = run_cell(ExperimentConfig(**cfg))
    assert a["trials"] == b["trials"]
    for t in a["trials"]:
        assert t["rows_restored"] > 0 and t["perturbation_norm"] > 0
        assert t["failed_iterations"] >= 1 and t["checkpoints"] >= 2
    algorithm = a["config"]["algorithm"]
    assert {k: algorithm[k] for k in check} == check
    want = {"accuracy"} if name == "cnn" else {"auc", "accuracy"}
    assert set(a["clean"]["metrics"]) == want
