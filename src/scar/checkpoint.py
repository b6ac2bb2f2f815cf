"""The checkpointer: the one object a training loop talks to.

    ckpt = Checkpointer(state, make_policy("priority", period=10, fraction=1/8), store)
    for it in range(1, n + 1):
        train_one_iteration(state, it)
        ckpt.step(it)                      # saves when the policy says so
    ...
    rec = ckpt.recover(lost_shards=[3], mode="partial")

It keeps, for the priority policy, the last-saved copy of every row (what a parameter-server
shard keeps beside its live rows) so that "change since last saved" is one pass over memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .policies import Policy
from .recovery import Recovery, check_mode, check_shards, fail, lost_rows, recover
from .state import State
from .store.base import CheckpointStore, SaveResult, specs_of
from .store.memory import MemoryStore

AuxFn = Callable[[], Mapping[str, np.ndarray]]


class Checkpointer:
    """Runs a checkpoint policy over a :class:`State` into a :class:`CheckpointStore`.

    ``aux`` is an optional callable returning worker-side arrays (data cursors, topic
    assignments...) saved with every checkpoint and handed back by a full rollback.
    """

    def __init__(
        self,
        state: State,
        policy: Policy,
        store: CheckpointStore | None = None,
        *,
        aux: AuxFn | None = None,
    ) -> None:
        self.state = state
        self.policy = policy
        self.store = store if store is not None else MemoryStore()
        self.store.open(specs_of(state))
        self.aux = aux
        self._saved = state.copy() if policy.needs_saved_copy else None
        # running totals, not a list of every save: a shard saving every few iterations for
        # weeks would keep one record per save for nothing
        self.saves = 0
        self.value_bytes = 0  # parameter bytes saved so far (the cost that policies equalize)
        self.stored_bytes = 0  # bytes the store wrote for them
        self.last_save: SaveResult | None = None

    # -- saving ---------------------------------------------------------------------------
    def save_all(self, iteration: int) -> SaveResult:
        """Save every row now (the base checkpoint every policy starts from)."""
        return self._save(iteration, {name: None for name in self.state})

    def step(self, iteration: int) -> SaveResult | None:
        """Call after each iteration; saves if the policy is due. Returns what was saved."""
        if not self.policy.is_due(iteration):
            return None
        chosen = {
            name: self.policy.select(
                name,
                self.state[name],
                None if self._saved is None else self._saved[name],
                iteration,
            )
            for name in self.state
        }
        return self._save(iteration, chosen)

    def _save(self, iteration: int, chosen: Mapping[str, np.ndarray | None]) -> SaveResult:
        rows = {}
        for name, ids in chosen.items():
            live = self.state[name]
            if self._saved is None:
                values = live if ids is None else live[ids]
            elif ids is None:
                values = live
                np.copyto(self._saved[name], live)
            else:
                from .select import gather_saving  # numba: imported on first use

                values = gather_saving(live, ids, self._saved[name])
            rows[name] = (ids, values)
        result = self.store.save(iteration, rows, aux=self.aux() if self.aux else None)
        self.saves += 1
        self.value_bytes += result.value_bytes
        self.stored_bytes += result.stored_bytes
        self.last_save = result
        return result

    # -- failure and recovery -------------------------------------------------------------
    def fail(self, lost_shards: Iterable[int]) -> dict[str, np.ndarray]:
        """Simulate the loss of shards: their live rows (and last-saved copies) are destroyed."""
        lost = fail(self.state, lost_shards)
        if self._saved is not None:
            for name, rows in lost.items():
                self._saved[name][rows] = np.nan
        return lost

    def recover(self, lost_shards: Iterable[int], mode: str = "partial") -> Recovery:
        """Restore after a failure of ``lost_shards``: ``partial`` or ``full`` (see recovery)."""
        check_mode(mode)
        shards = check_shards(self.state, lost_shards)
        self.store.wait()
        rec = recover(self.state, self.store, shards, mode)
        if self._saved is not None:
            # The restored rows now equal their saved values.
            rows = lost_rows(self.state, shards) if mode == "partial" else dict.fromkeys(self.state)
            for name, live in self.state.items():
                ids = slice(None) if rows[name] is None else rows[name]
                self._saved[name][ids] = live[ids]
        return rec
