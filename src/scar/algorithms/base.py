"""The one small interface every algorithm implements.

An algorithm owns its data and worker-side state and updates the server state (named tables
of rows) one iteration at a time. It knows nothing about checkpoints, shards or failures: the
runtime calls ``step``, the checkpointer copies rows, recovery writes rows back and then calls
``after_restore`` so worker-side state can be made consistent with the restored rows.

Iteration ``k`` must depend only on the tables, the worker state and ``k`` itself: minibatches,
sampling noise and learning rates are keyed by the iteration index (common random numbers).
Rewinding the counter therefore rewinds the data cursor, the learning-rate schedule and the RNG,
and a clean and a perturbed run see the same data at the same iteration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

Tables = Mapping[str, np.ndarray]


class Algorithm(ABC):
    name: str = ""
    #: True when an iteration is a deterministic map x -> f(x) (the bound applies).
    deterministic: bool = False
    #: The stream of per-iteration randomness (minibatches, sampling) a stochastic algorithm
    #: draws: 0 is its seed's own; another chain is another draw of the same run from the same
    #: start, data and settings (the experiments pair each failed run with a clean run of its
    #: chain). Deterministic algorithms draw nothing and ignore it.
    chain: int = 0

    def set_chain(self, chain: int) -> None:
        """Draw the per-iteration randomness of ``chain`` from now on (see ``chain``)."""
        self.chain = int(chain)

    def chain_words(self) -> tuple[int, ...]:
        """Words to append to a random stream's key so that it depends on the chain (none for
        chain 0: its streams are the seed's own, as before chains existed)."""
        return () if self.chain == 0 else (0xC4A1, self.chain)

    @abstractmethod
    def start(self) -> dict[str, np.ndarray]:
        """Begin a fresh run: reset worker-side state and return the initial server tables
        (new arrays, deterministic for the algorithm's seed)."""

    @abstractmethod
    def step(self, tables: Tables, iteration: int) -> None:
        """Run iteration ``iteration`` (1-based), updating ``tables`` in place."""

    @abstractmethod
    def objective(self, tables: Tables) -> float:
        """The training objective (lower is better)."""

    def aux_state(self) -> dict[str, np.ndarray]:
        """Worker-side arrays a full rollback must rewind (none by default)."""
        return {}

    def follows(self) -> dict[str, str]:
        """Tables saved exactly when and where another table is (an optimizer's state follows
        its parameter; see :class:`scar.checkpoint.Checkpointer`); none by default."""
        return {}

    def set_aux_state(self, aux: Mapping[str, np.ndarray]) -> None:
        """Reinstate worker-side arrays saved by a checkpoint."""

    def skip_to(self, iteration: int, aux: Mapping[str, np.ndarray]) -> None:
        """The runtime replayed a recorded run: the tables are as after ``iteration``, and
        ``aux`` holds the worker-side arrays of that moment (:meth:`aux_state`)."""
        self.set_aux_state(aux)

    def after_restore(self, tables: Tables, rows: Mapping[str, np.ndarray | None]) -> None:
        """Called after ``rows`` (None = all) were overwritten by a recovery."""

    def rebuilds(self, iteration: int) -> tuple[str, ...]:
        """The tables whose rows, after ``iteration``, are a function of the rest of the state
        (the other tables, the worker-side arrays) - recovery by recomputation: lost rows of
        these tables are recomputed exactly by :meth:`rebuild` instead of read back from a
        checkpoint. None by default."""
        return ()

    def rebuild(self, tables: Tables, rows: Mapping[str, np.ndarray], iteration: int) -> None:
        """Recompute ``rows`` of tables in :meth:`rebuilds` from the rest of the state after
        ``iteration`` (every other row and table already whole)."""
        raise NotImplementedError(f"{self.name} cannot rebuild rows")

    def metrics(self, tables: Tables) -> dict[str, float]:
        """Quality measures beyond the objective (e.g. held-out RMSE), for the results."""
        return {}

    def optimum(self) -> dict[str, np.ndarray] | None:
        """The optimum ``x*`` when it can be computed (convex problems), else None."""
        return None

    def contraction_at_optimum(self) -> float | None:
        """The spectral radius of one iteration's Jacobian at the optimum, when the algorithm
        knows it in closed form (None: SCAR measures it numerically)."""
        return None

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, for the experiment record."""
        return {}
