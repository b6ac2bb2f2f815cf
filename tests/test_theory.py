import math

import numpy as np

from scar import theory


def test_contraction_of_a_geometric_sequence():
    d = 5.0 * 0.9 ** np.arange(60)
    assert math.isclose(theory.estimate_contraction(d), 0.9, rel_tol=1e-9)


def test_contraction_takes_the_slowest_step():
    d = np.concatenate([[1.0], 0.5 ** np.arange(1, 5), [0.5**4 * 0.95]])
    assert math.isclose(theory.estimate_contraction(d), 0.95)


def test_no_contraction_is_undefined():
    assert theory.estimate_contraction([1.0, 1.1, 0.5, 0.2]) is None
    assert theory.estimate_contraction([1.0, 0.5]) is None
    assert theory.rework_bound(None, 1.0, 1.0) is None
    assert theory.rework_bound(0.9, 1.0, 0.0) is None


def test_single_bound_formula_and_monotonicity():
    c = 0.8
    assert theory.rework_bound(c, 0.0, 1.0) == 1.0
    b = [theory.rework_bound(c, x, 1.0) for x in (0.1, 1.0, 10.0)]
    assert b[0] < b[1] < b[2]
    assert math.isclose(b[1], 1 + math.log(2) / math.log(1 / c))
    # a rollback that undoes k iterations of an exact contraction costs at most 1 + k
    k, dT = 7, 0.3
    delta = dT * (c**-k - 1)  # ||x(T-k) - x(T)|| on the envelope
    assert math.isclose(theory.rework_bound(c, delta, dT), 1 + k)


def test_general_bound_matches_single_perturbation_on_the_envelope():
    c, d0, T, delta = 0.9, 2.0, 12, 0.05
    single = theory.rework_bound(c, delta, d0 * c**T)
    many = theory.rework_bound_many(c, [(T, delta)], d0)
    assert math.isclose(single, many, rel_tol=1e-12)
    assert theory.rework_bound_many(c, [(T, delta), (T + 3, delta)], d0) > many
    assert theory.rework_bound_many(c, [], d0) == 1.0
    # stays finite for late perturbations
    assert math.isfinite(theory.rework_bound_many(c, [(5000, 1.0)], d0))


def test_perturbation_norm():
    a = {"x": np.zeros((2, 2)), "y": np.zeros((1, 3))}
    b = {"x": np.array([[3.0, 0], [0, 0]]), "y": np.array([[0, 4.0, 0]])}
    assert theory.perturbation_norm(a, b) == 5.0


def test_local_contraction_of_a_linear_map_is_its_spectral_radius():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    eig = np.linspace(0.1, 0.93, 30)
    eig[3] = -0.95  # the largest in magnitude is negative (an oscillating direction)
    A = Q @ np.diag(eig) @ Q.T
    xs = {"x": rng.standard_normal((10, 3))}

    def step(tables):
        x = tables["x"].ravel() - xs["x"].ravel()
        tables["x"][...] = (xs["x"].ravel() + A @ x).reshape(10, 3)

    assert math.isclose(theory.local_contraction(step, xs), 0.95, rel_tol=1e-6)


def test_mlr_closed_form_contraction_matches_the_measured_one():
    from scar.algorithms import registry

    algo = registry.build("mlr", "digits", "gd")
    measured = theory.local_contraction(lambda t: algo.step(t, 1), algo.optimum())
    assert math.isclose(algo.contraction_at_optimum(), measured, rel_tol=2e-5)
