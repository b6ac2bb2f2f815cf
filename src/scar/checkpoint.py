"""The checkpointer: the one object a training loop talks to.

    with Checkpointer(state, make_policy("priority", period=10, fraction=1/8), store) as ckpt:
        for it in range(1, n + 1):
            train_one_iteration(state, it)
            ckpt.step(it)                  # the first: every row; then when the policy says so
        ...
        rec = ckpt.recover(lost_shards=[3], mode="partial")
    # left: every save durable, the store closed

and in a new process, with tables of the same shapes: ``start = ckpt.restore()`` puts the
newest checkpoint back into the tables and returns its iteration, to go on from ``start + 1``.

It keeps, for the priority policy, the last-saved copy of every row (what a parameter-server
shard keeps beside its live rows) so that "change since last saved" is one pass over memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from . import validation as check
from .errors import StoreError
from .policies import Policy
from .recovery import Recovery, check_mode, check_shards, fail, lost_rows, recover, restore_rows
from .state import State
from .store.base import CheckpointStore, SaveResult, specs_of
from .store.memory import MemoryStore
from .validation import DEFAULT_RECOVERY

AuxFn = Callable[[], Mapping[str, np.ndarray]]


class Checkpointer:
    """Runs a checkpoint policy over a :class:`State` into a :class:`CheckpointStore`.

    ``aux`` is an optional callable returning worker-side arrays (data cursors, topic
    assignments...) saved with every checkpoint and handed back by a full rollback.

    ``follows`` maps a table to the table it follows: a follower (an optimizer's state of a
    parameter, laid out row for row like it) is saved exactly when and where its leader is,
    with the leader's row ids, so a restore always finds a row's parameter and optimizer state
    from the same save. The policy chooses rows of the leaders only (a follower's own change
    plays no part); only leaders keep a last-saved copy.

    Its lifecycle:

    * The first :meth:`step` makes the base checkpoint (every row, at that iteration) when the
      store does not yet hold a saved value of every row; later steps save what the policy
      chooses when it is due. :meth:`save_all` makes a base checkpoint explicitly (a step after
      it does not save every row again), :meth:`restore` loads one back.
    * :meth:`wait` returns once every save is durable (the store's ``wait``; with asynchronous
      writes, saves return before that).
    * :meth:`close` waits, then closes the store, whether the Checkpointer made it (a
      :class:`MemoryStore` when none is given) or it was passed in: the Checkpointer opens the
      store for the state's tables and owns it from then on. Closing twice does nothing; saving
      after close raises :class:`StoreError`. ``with Checkpointer(...) as ckpt:`` closes it on
      leaving the block.
    """

    def __init__(
        self,
        state: State,
        policy: Policy,
        store: CheckpointStore | None = None,
        *,
        aux: AuxFn | None = None,
        follows: Mapping[str, str] | None = None,
    ) -> None:
        self.state = state
        self.policy = policy
        self.follows = _check_follows(state, follows or {})
        self.leaders = [name for name in state if name not in self.follows]
        self.store = store if store is not None else MemoryStore()
        self.store.open(specs_of(state))
        self.aux = aux
        self._saved = (
            {name: state[name].copy() for name in self.leaders} if policy.needs_saved_copy else None
        )
        # True once the store is known to hold a saved value of every row (a base checkpoint);
        # until then the first step asks the store, and saves every row if it does not
        self._covered = False
        self._closed = False
        # running totals, not a list of every save: a shard saving every few iterations for
        # weeks would keep one record per save for nothing
        self.saves = 0
        self.value_bytes = 0  # parameter bytes saved so far (the cost that policies equalize)
        self.stored_bytes = 0  # bytes the store wrote for them
        self.last_save: SaveResult | None = None

    # -- saving ---------------------------------------------------------------------------
    def save_all(self, iteration: int) -> SaveResult:
        """Save every row now (the base checkpoint every policy starts from)."""
        result = self._save(iteration, {name: None for name in self.state})
        self._covered = True
        return result

    def due(self, iteration: int) -> bool:
        """Whether :meth:`step` at ``iteration`` would save (the base checkpoint, or the
        policy is due)."""
        if not self._covered:
            self._covered = self._store_covers_state()
            if not self._covered:
                return True
        return self.policy.is_due(iteration)

    def step(self, iteration: int) -> SaveResult | None:
        """Call after each iteration; saves if the policy is due. Returns what was saved.

        The first call saves every row instead when the store holds no saved value of some row
        yet (no :meth:`save_all` or :meth:`restore` before it, and an empty store)."""
        if not self.due(iteration):
            return None
        if not self._covered:  # due() found no saved value of some row
            return self.save_all(iteration)
        chosen = {
            name: self.policy.select(
                name,
                self.state[name],
                None if self._saved is None else self._saved[name],
                iteration,
            )
            for name in self.leaders
        }
        return self._save(iteration, chosen)

    def _store_covers_state(self) -> bool:
        """Whether the store holds a saved value of every row of every table."""
        if self.store.latest() is None:
            return False
        return all(bool((self.store.saved_iteration(name) >= 0).all()) for name in self.state)

    def _save(self, iteration: int, chosen: Mapping[str, np.ndarray | None]) -> SaveResult:
        if self._closed:
            raise StoreError("the checkpointer is closed: nothing more can be saved")
        chosen = {**chosen, **{f: chosen[lead] for f, lead in self.follows.items()}}
        rows = {}
        for name in self.state:  # the state's order: a save lists every table, leaders or not
            ids, live = chosen[name], self.state[name]
            if self._saved is None or name in self.follows:
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

    # -- lifecycle ------------------------------------------------------------------------
    def wait(self) -> None:
        """Block until every save so far is durable; raises a background write's failure."""
        self.store.wait()

    def close(self) -> None:
        """Wait until every save is durable, then close the store (see the class docstring)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.wait()
        finally:
            self.store.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def restore(self) -> int:
        """Resume from the store: every row of its newest committed version is read into the
        live tables (in place), and becomes what the policy compares against at the next
        save. Returns the iteration that version saved (training goes on with the next one).

        For a new process with tables of the same shapes on a durable store, or within a
        process on any store. The worker-side arrays saved with it: ``store.read_aux()``.
        Raises :class:`StoreError` when the store holds no checkpoint."""
        self.store.wait()
        latest = self.store.latest()
        if latest is None:
            raise StoreError("nothing to restore: the store holds no committed checkpoint")
        restore_rows(self.state, self.store, dict.fromkeys(self.state))
        if self._saved is not None:
            for name, saved in self._saved.items():
                np.copyto(saved, self.state[name])
        self._covered = True
        return latest.iteration

    # -- failure and recovery -------------------------------------------------------------
    def fail(self, lost_shards: Iterable[int]) -> dict[str, np.ndarray]:
        """Simulate the loss of shards: their live rows (and last-saved copies) are destroyed."""
        lost = fail(self.state, lost_shards)
        if self._saved is not None:
            for name, saved in self._saved.items():
                saved[lost[name]] = np.nan
        return lost

    def recover(self, lost_shards: Iterable[int], mode: str = DEFAULT_RECOVERY) -> Recovery:
        """Restore after a failure of ``lost_shards``: ``partial`` or ``full`` (see recovery)."""
        check_mode(mode)
        shards = check_shards(self.state, lost_shards)
        self.store.wait()
        rec = recover(self.state, self.store, shards, mode)
        if mode == "full" or len(shards) == self.state.n_shards:
            self._covered = True  # every row was read back: the store holds them all
        if self._saved is not None:
            # The restored rows now equal their saved values.
            rows = lost_rows(self.state, shards) if mode == "partial" else dict.fromkeys(self.state)
            for name, saved in self._saved.items():
                ids = slice(None) if rows[name] is None else rows[name]
                saved[ids] = self.state[name][ids]
        return rec


def _check_follows(state: State, follows: Mapping[str, str]) -> dict[str, str]:
    """``follows`` checked: tables of the state, a follower's leader no follower itself, both
    with the same rows (a follower's row ``i`` is the state of its leader's row ``i``)."""
    out = {}
    for follower, leader in follows.items():
        for name in (follower, leader):
            if name not in state:
                check.fail("follows", f"tables of the state ({', '.join(state)})", name)
        if leader in follows or leader == follower:
            check.fail("follows", "a leader that follows no table", f"{follower} -> {leader}")
        if state[follower].shape[0] != state[leader].shape[0]:
            check.fail(
                "follows",
                "a follower with as many rows as its leader",
                f"{follower} ({state[follower].shape[0]} rows) -> {leader} "
                f"({state[leader].shape[0]} rows)",
            )
        out[follower] = leader
    return out
