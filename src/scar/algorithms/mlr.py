"""Multinomial logistic regression with L2 regularisation.

Objective: mean cross-entropy + (l2 / 2) * ||W||^2. The server table ``weights`` has one row
per input feature plus a last row for the bias, one column per class (row = feature, as a
parameter server shards a linear model).

Optimisers: ``gd`` (full-batch gradient descent, deterministic: the theory checks run on it) and
``sgd`` (minibatches; the batch of iteration k comes from a per-epoch permutation keyed by the
seed and the epoch, and the step size is ``lr / sqrt(1 + k / lr_decay)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation as check
from ..datasets import Classification
from .base import Algorithm, Tables

OPTIMIZERS = ("gd", "sgd")


def cross_entropy_gradient(X: np.ndarray, Y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The cross-entropy's gradient summed over the examples, ``X^T (softmax(logits) - Y)``
    (``logits = X @ W``, overwritten): ``MLR.gradient`` scales it by 1 / examples and adds the
    L2 term; a parameter-server worker pushes it for its examples."""
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(axis=1, keepdims=True)
    P -= Y
    return X.T @ P


@dataclass(frozen=True)
class MLRParams:
    optimizer: str = "gd"
    lr: float = 1.0
    l2: float = 1e-3
    batch_size: int = 128
    lr_decay: float = 0.0  # iterations; 0 = constant step size
    seed: int = 0


class MLR(Algorithm):
    name = "mlr"
    TABLE = "weights"

    def __init__(self, data: Classification, params: MLRParams) -> None:
        check.one_of("optimizer", params.optimizer, OPTIMIZERS)
        check.positive("lr", params.lr)
        check.non_negative("l2", params.l2)
        check.whole("batch_size", params.batch_size, ge=1)
        check.non_negative("lr_decay", params.lr_decay)
        self.data = data
        self.p = params
        self.deterministic = params.optimizer == "gd"
        n = data.X.shape[0]
        self.X = np.hstack([data.X, np.ones((n, 1), np.float32)])  # bias as the last feature
        self.Y = np.zeros((n, data.n_classes), np.float32)
        self.Y[np.arange(n), data.y] = 1.0
        self._perm_epoch = -1
        self._perm = np.arange(n)
        self._optimum: np.ndarray | None = None
        self._memo_W: np.ndarray | None = None  # the weights the memoised logits belong to
        self._memo_logits: np.ndarray | None = None
        self._X64: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape[1], self.data.n_classes

    def start(self) -> dict[str, np.ndarray]:
        return {self.TABLE: np.zeros(self.shape, np.float32)}

    # -- iteration ------------------------------------------------------------------------
    def gradient(self, W: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """Gradient of the objective on the rows ``idx`` of the data (all when None)."""
        X = self._data(W.dtype) if idx is None else self.X[idx]
        Y = self.Y if idx is None else self.Y[idx]
        logits = self._logits(W).copy() if idx is None else X @ W
        G = cross_entropy_gradient(X, Y, logits)
        G *= G.dtype.type(1.0 / X.shape[0])
        G += G.dtype.type(self.p.l2) * W
        return G

    def batch(self, iteration: int) -> np.ndarray | None:
        """Data rows used by ``iteration`` (None = all): a pure function of the iteration."""
        if self.p.optimizer == "gd":
            return None
        n, b = self.X.shape[0], min(self.p.batch_size, self.X.shape[0])
        per_epoch = n // b
        epoch, pos = divmod(iteration - 1, per_epoch)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.p.seed, epoch, *self.chain_words()])
            self._perm = rng.permutation(n)
            self._perm_epoch = epoch
        return np.sort(self._perm[pos * b : (pos + 1) * b])

    def set_chain(self, chain: int) -> None:
        super().set_chain(chain)
        self._perm_epoch = -1  # the cached permutation was the other chain's

    def learning_rate(self, iteration: int) -> float:
        if self.p.lr_decay <= 0:
            return self.p.lr
        return self.p.lr / np.sqrt(1.0 + (iteration - 1) / self.p.lr_decay)

    def step(self, tables: Tables, iteration: int) -> None:
        W = tables[self.TABLE]
        G = self.gradient(W, self.batch(iteration))
        W -= W.dtype.type(self.learning_rate(iteration)) * G

    def objective(self, tables: Tables) -> float:
        return self._objective(tables[self.TABLE])

    def _data(self, dtype: np.dtype) -> np.ndarray:
        """The features in the weights' precision: float64 weights are only used by the theory
        probes (finite differences), which need float64 products; the copy is made once."""
        if dtype == self.X.dtype:
            return self.X
        if self._X64 is None:
            self._X64 = self.X.astype(np.float64)
        return self._X64

    def _logits(self, W: np.ndarray) -> np.ndarray:
        """Logits of the whole data set, memoised: full-batch GD evaluates the objective and
        then the gradient at the same weights, and the weights (rows x classes) are cheap to
        compare while the product is one pass over the data."""
        if (
            self._memo_W is None
            or self._memo_W.dtype != W.dtype
            or not np.array_equal(self._memo_W, W)
        ):
            self._memo_logits = self._data(W.dtype) @ W
            self._memo_W = W.copy()
        return self._memo_logits

    def _objective(self, W: np.ndarray) -> float:
        logits = self._logits(W).astype(np.float64)
        top = logits.max(axis=1)
        lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        ce = float(np.mean(lse - logits[np.arange(len(logits)), self.data.y]))
        return ce + 0.5 * self.p.l2 * float(np.sum(np.square(W, dtype=np.float64)))

    # -- theory ---------------------------------------------------------------------------
    def optimum(self) -> dict[str, np.ndarray]:
        """The exact minimiser (the objective is strongly convex for l2 > 0), by L-BFGS.

        Small data sets are solved in float64 throughout. Large ones (MNIST) use float32 data
        products, which keeps a solve to a few seconds; the optimum is then accurate to ~1e-6,
        far below the distances the experiments measure."""
        if self._optimum is None:
            # scipy is imported here: a runtime's workers import this module for the gradient
            # and never need the optimum (scipy.optimize takes 0.3-0.8 s to import here)
            from scipy.optimize import minimize
            from scipy.special import log_softmax

            shape = self.shape
            precise = self.X.size <= 5_000_000
            X = self.X.astype(np.float64) if precise else self.X
            Y = self.Y.astype(np.float64) if precise else self.Y

            def fg(w: np.ndarray) -> tuple[float, np.ndarray]:
                W = w.reshape(shape).astype(X.dtype)
                lsm = log_softmax((X @ W).astype(np.float64), axis=1)
                f = -float(np.sum(lsm * Y)) / len(X) + 0.5 * self.p.l2 * float(w @ w)
                R = (np.exp(lsm) - Y).astype(X.dtype)
                G = (X.T @ R).astype(np.float64) / len(X) + self.p.l2 * w.reshape(shape)
                return f, G.ravel()

            res = minimize(
                fg,
                np.zeros(shape[0] * shape[1]),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 5000, "gtol": 1e-10 if precise else 1e-7, "ftol": 1e-15},
            )
            self._optimum = res.x.reshape(shape)
        return {self.TABLE: self._optimum}

    def contraction_at_optimum(self) -> float | None:
        """Full-batch GD: the Jacobian at x* is I - lr (H + l2 I), H the cross-entropy Hessian.
        H is positive semi-definite and singular (adding one vector to every class's weights
        leaves the softmax unchanged; so do weights of features that are always zero), so for a
        stable step the spectral radius is exactly 1 - lr * l2."""
        if self.p.optimizer != "gd":
            return None
        return 1.0 - self.p.lr * self.p.l2

    def params(self) -> dict:
        return {
            "optimizer": self.p.optimizer,
            "lr": self.p.lr,
            "l2": self.p.l2,
            "batch_size": self.p.batch_size if self.p.optimizer == "sgd" else None,
            "lr_decay": self.p.lr_decay,
            "rows": self.shape[0],
            "width": self.shape[1],
            "dataset": self.data.name,
            "examples": int(self.X.shape[0]),
        }
