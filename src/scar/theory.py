"""The paper's rework bound, and what it needs: a contraction rate and perturbation norms.

If one iteration ``f`` contracts towards the optimum, ``||f(x) - x*|| <= c ||x - x*||`` with
``c < 1``, perturbations ``delta_k`` added after iteration ``k`` cost at most

    1 + log(1 + sum_k c^(-k) ||delta_k|| / ||x(0) - x*||) / log(1/c)

extra iterations. For one perturbation at iteration ``T`` this reads
``1 + log_{1/c}(1 + ||delta|| / ||x(T) - x*||)``: what matters is the size of the perturbation
relative to the distance still to go.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np


def estimate_contraction(distances: Sequence[float], floor: float = 1e-4) -> float | None:
    """Contraction rate ``c`` from the distances ``||x(k) - x*||`` of a clean run.

    ``c`` is the largest one-step ratio ``d(k+1)/d(k)`` while ``d(k)`` is above ``floor*d(0)``
    (below that, the precision of ``x*`` dominates). Taking the largest ratio makes ``c`` the rate
    that holds at every step of the run, as the bound assumes. Returns None when the run does
    not contract (some ratio >= 1) or is too short to tell.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.size < 3 or not np.isfinite(d).all() or d[0] <= 0:
        return None
    keep = d[:-1] > floor * d[0]
    ratios = d[1:][keep] / d[:-1][keep]
    if ratios.size < 2:
        return None
    c = float(ratios.max())
    return c if 0.0 < c < 1.0 else None


def rework_bound(c: float | None, delta_norm: float, distance: float) -> float | None:
    """Bound on the extra iterations caused by one perturbation of norm ``delta_norm`` applied
    when the state is ``distance`` away from the optimum. None where undefined."""
    if c is None or not 0.0 < c < 1.0 or distance <= 0 or not math.isfinite(delta_norm):
        return None
    return 1.0 + math.log1p(delta_norm / distance) / math.log(1.0 / c)


def rework_bound_many(
    c: float | None, perturbations: Iterable[tuple[int, float]], initial_distance: float
) -> float | None:
    """The general bound for perturbations ``(k, ||delta_k||)`` on a run that started
    ``initial_distance`` from the optimum."""
    if c is None or not 0.0 < c < 1.0 or initial_distance <= 0:
        return None
    # sum c^(-k) ||delta_k||, computed in log space to stay finite for large k
    terms = [math.log(n) - k * math.log(c) for k, n in perturbations if n > 0]
    if not terms:
        return 1.0
    m = max(terms)
    log_sum = m + math.log(sum(math.exp(t - m) for t in terms)) - math.log(initial_distance)
    # log(1 + e^log_sum), stably
    log1p_sum = (
        log_sum + math.log1p(math.exp(-log_sum)) if log_sum > 0 else math.log1p(math.exp(log_sum))
    )
    return 1.0 + log1p_sum / math.log(1.0 / c)


def perturbation_norm(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]) -> float:
    """L2 distance between two states (same table names and shapes), over all rows."""
    total = 0.0
    for name, a in before.items():
        d = np.asarray(after[name], dtype=np.float64) - np.asarray(a, dtype=np.float64)
        total += float(np.einsum("ij,ij->", d, d))
    return math.sqrt(total)


def local_contraction(
    step: Callable[[dict[str, np.ndarray]], None],
    point: Mapping[str, np.ndarray],
    rel_step: float = 1e-4,
    tol: float = 1e-5,
) -> float:
    """Contraction of a deterministic iteration around ``point`` (an optimum): the spectral
    radius of the Jacobian of ``step``, by Lanczos on finite differences (``step`` maps float64
    tables in place; its Jacobian is assumed symmetric, as for gradient descent).

    The distance ratios of a clean run only see the directions that run moves in: a gradient
    descent started at zero never excites, for instance, the directions its gradient is blind
    to, which still shrink only as fast as the regulariser makes them. A perturbation can point
    anywhere, so the bound needs the slowest direction too.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh  # heavy: only the bound's probes use it

    names = list(point)
    shapes = [np.asarray(point[n]).shape for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    x0 = np.concatenate([np.asarray(point[n], dtype=np.float64).ravel() for n in names])
    h = rel_step * max(1.0, float(np.linalg.norm(x0)))

    def apply(x: np.ndarray) -> np.ndarray:
        tables, at = {}, 0
        for n, shape, size in zip(names, shapes, sizes, strict=True):
            tables[n] = x[at : at + size].reshape(shape).copy()
            at += size
        step(tables)
        return np.concatenate([tables[n].ravel() for n in names])

    fx0 = apply(x0)

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64).ravel()
        return (apply(x0 + h * v) - fx0) / h

    op = LinearOperator((x0.size, x0.size), matvec=matvec, dtype=np.float64)
    vals = eigsh(
        op,
        k=1,
        which="LM",
        tol=tol,
        return_eigenvectors=False,
        v0=np.random.default_rng(0).standard_normal(x0.size),
    )
    return float(np.abs(vals).max())
