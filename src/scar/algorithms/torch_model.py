"""A PyTorch network trained by minibatches, as an :class:`Algorithm` of the experiments.

The server state is the network's and the optimizer's tables (:class:`scar.tensors.TorchTables`:
numpy views of the live tensors, so SCAR's checkpoints, failures and recoveries act on the
tensors the network trains with; optimizer state follows its parameter row for row). Common
random numbers: the batch of iteration ``k`` is a pure function of (seed, k); torch runs on one
thread with deterministic algorithms, so iteration ``k`` is a deterministic function of the
tables, the optimizer's step counts and ``k``, as the experiments' replay needs. The objective
is the mean training loss over a fixed evaluation sample.

A subclass builds the network and the data (``build``), and says how a batch of example ids
becomes a loss (``loss``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import validation as check
from ..tensors import TorchTables
from .base import Algorithm, Tables

OPTIMIZERS = ("sgd", "adam", "adagrad")


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    check.one_of("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adagrad(params, lr=lr)


def one_thread() -> None:
    """Torch on one thread, deterministic kernels (set again before every step: numba's
    OpenMP layer may change the thread count a save ran with)."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    if not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True)


class TorchModel(Algorithm):
    deterministic = False  # minibatches: not a contraction map (the bound is not computed)

    def __init__(
        self,
        optimizer: str,
        lr: float,
        batch_size: int,
        examples: int,
        eval_size: int,
        seed: int,
    ) -> None:
        check.one_of("optimizer", optimizer, OPTIMIZERS)
        check.positive("lr", lr)
        check.whole("batch_size", batch_size, ge=1)
        check.whole("eval_size", eval_size, ge=1)
        self.seed = seed
        self.lr, self.batch_size, self.optimizer_name = lr, batch_size, optimizer
        self._perm: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))
        one_thread()
        torch.manual_seed(seed)
        self.net = self.build()
        self.n = examples
        self.opt = make_optimizer(optimizer, self.net.parameters(), lr)
        self.tables = TorchTables(self.net, self.opt, rng=False)
        self._start = {n: a.copy() for n, a in self.tables.arrays.items()}
        self._start_aux = self.tables.aux()
        self.eval_ids = np.sort(
            np.random.default_rng([seed, 0xE7]).choice(self.n, min(eval_size, self.n), False)
        )

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """The network (its initial weights from torch's seeded generator) and the data."""

    @abstractmethod
    def loss(self, ids: np.ndarray) -> torch.Tensor:
        """Mean loss of the examples ``ids``."""

    # -- the Algorithm interface ------------------------------------------------------------
    def start(self) -> dict[str, np.ndarray]:
        for name, a in self.tables.arrays.items():
            np.copyto(a, self._start[name])
        self.tables.put_aux(self._start_aux)
        return dict(self.tables.arrays)

    def follows(self) -> dict[str, str]:
        return dict(self.tables.follows)

    def batch(self, iteration: int) -> np.ndarray:
        """Example ids of ``iteration``'s minibatch: a per-epoch permutation keyed by (seed,
        epoch), a pure function of the iteration (the epoch's permutation is kept between
        calls: drawing 200,000 ids again every step cost as much as a DLRM step)."""
        b = min(self.batch_size, self.n)
        epoch, pos = divmod(iteration - 1, self.n // b)
        if self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xBA7C, *self.chain_words()])
            self._perm = (epoch, rng.permutation(self.n))
        return np.sort(self._perm[1][pos * b : (pos + 1) * b])

    def set_chain(self, chain: int) -> None:
        super().set_chain(chain)
        self._perm = (-1, self._perm[1])  # the cached permutation was the other chain's

    def step(self, tables: Tables, iteration: int) -> None:
        with self._bound(tables):
            one_thread()
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.batch(iteration)).backward()
            self.opt.step()

    def objective(self, tables: Tables) -> float:
        with self._bound(tables), torch.no_grad():
            one_thread()
            return float(self.loss(self.eval_ids))

    def aux_state(self) -> dict[str, np.ndarray]:
        return self.tables.aux()

    def set_aux_state(self, aux: Mapping[str, np.ndarray]) -> None:
        self.tables.put_aux(aux)

    def params(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer_name,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "examples": self.n,
            "eval_size": int(self.eval_ids.size),
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
            "tables": len(self.tables.arrays),
        }

    # -- tables other than the network's own ------------------------------------------------
    def _bound(self, tables: Tables):
        """The network computes on ``tables``: they are its own views (the usual case: the
        experiments pass back what ``start`` returned), or their values are copied in for the
        call and the network's copied back out after it."""
        return _Bound(self.tables.arrays, tables)


class _Bound:
    def __init__(self, own: Mapping[str, np.ndarray], given: Tables) -> None:
        self.own, self.given = own, given
        self.foreign = [n for n, a in own.items() if not _same(given[n], a)]
        self.saved: dict[str, np.ndarray] = {}

    def __enter__(self) -> None:
        for n in self.foreign:
            self.saved[n] = self.own[n].copy()
            np.copyto(self.own[n], self.given[n])

    def __exit__(self, *exc: object) -> None:
        for n in self.foreign:
            if not exc[0] and self.given[n].flags.writeable:
                np.copyto(self.given[n], self.own[n])
            np.copyto(self.own[n], self.saved[n])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """The same memory, shape and strides (a view of a view is as good as the view)."""
    return a is b or (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )
