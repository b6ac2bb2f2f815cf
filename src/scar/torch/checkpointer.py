"""SCAR's checkpoints for a PyTorch model and its optimizer.

    ckpt = TorchCheckpointer(model, optimizer, policy="priority", period=20, fraction=1/8,
                             store="ckpt/run1", shards=8, async_writes=True)
    for it in range(start, n):
        ...; loss.backward(); optimizer.step()
        ckpt.step(it)                        # saves when due; the first call saves everything
    rec = ckpt.recover(lost_shards=[3], mode="partial")   # in place: parameters and optimizer
    ckpt.close()

and in a fresh process, the same constructors then ``start = ckpt.restore() + 1``.

The model and optimizer become row tables that share memory with the live tensors
(:mod:`scar.torch.tables`); an optimizer's state follows its parameter row for row (a row's
state is saved whenever the row is, so every restore is consistent); the rest is a
:class:`~scar.checkpoint.Checkpointer` like any other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from .. import validation as check
from ..checkpoint import Checkpointer
from ..policies import Policy, PriorityPolicy, TrackedPriority, make_policy
from ..recovery import Recovery, check_mode
from ..state import State
from ..store.base import CheckpointStore, SaveResult
from ..store.memory import MemoryStore
from ..store.store import open_store
from ..tensors import TorchTables
from ..validation import DEFAULT_FRACTION, DEFAULT_POLICY, DEFAULT_RECOVERY


@contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Leave torch's intra-op thread count as it was. numba's OpenMP threading layer sets
    OpenMP's thread count of the calling thread when SCAR's selection kernels run on one
    thread for a small table, and torch reads the same setting: without this, a user's
    ``torch.set_num_threads(1)`` became 2 after a save, and training changed in its last bits."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


class TorchCheckpointer:
    """Prioritized, partial checkpoints of a ``torch.nn.Module`` and its optimizer.

    ``policy``: full, priority, round-robin or random, with ``period`` C and ``fraction`` r as
    for every SCAR policy (a fractional policy saves r of the rows every r·C steps), or a
    :class:`~scar.policies.Policy` object used as it is (``period`` and ``fraction`` unused). ``store``: a
    URL (a local folder, ``memory://...``, ``s3://...``), a :class:`CheckpointStore`, or None
    (in memory, this process only). ``shards``: how many parameter-server shards every
    table's rows are split over (what ``recover`` can lose). ``block``: elements per row of a
    tensor that is not an embedding (default: 512 bytes a row). ``async_writes``: saves return
    once the chosen rows are copied; the store writes them in the background. More store
    options (``keep_last``, ``compression``, ``fsync``...) as keywords in ``store_options``.

    ``background``: a due save chooses and copies its rows on a thread of its own while the
    next iteration's forward and backward passes run (they only read the parameters); the
    optimizer's next ``step`` waits for it first (a step pre-hook), and so does the forward
    pass of any module with floating buffers (BatchNorm updates its running statistics
    there). ``step`` then returns None; ``last_save`` tells what the latest save wrote, and
    ``fence_seconds`` how long the training loop waited for background saves. Parameters must
    change only through the optimizer (or after ``wait``) while a save may be running.

    Nothing is written when an argument is wrong: every check runs before the store opens.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        policy: str | Policy = DEFAULT_POLICY,
        period: int = 20,
        fraction: float = DEFAULT_FRACTION,
        store: str | CheckpointStore | None = None,
        shards: int = 8,
        block: int | None = None,
        async_writes: bool = False,
        seed: int = 0,
        store_options: Mapping[str, object] | None = None,
        background: bool = False,
    ) -> None:
        check.whole("shards", shards, ge=1)
        if background and optimizer is None:
            check.fail(
                "background",
                "False when there is no optimizer (its step waits for a background save)",
                background,
            )
        given = isinstance(policy, Policy)  # a policy object is used as it is
        base = policy if given else make_policy(policy, period, fraction, seed)
        self.tables = TorchTables(model, optimizer, block)
        self.model, self.optimizer = model, optimizer
        self.state = State(self.tables.arrays, n_shards=shards)
        self._sparse: dict[str, list] = {name: [] for name in self.tables.sparse}
        self._hooks = []
        if type(base) is PriorityPolicy and self._sparse and not given:
            leaders = [n for n in self.state if n not in self.tables.follows]
            base = TrackedPriority(base, {n: self.state[n].shape[0] for n in leaders})
            self._hooks = [
                self.tables.tensors[name].register_post_accumulate_grad_hook(self._touched(name))
                for name in self._sparse
            ]
        if store is None:
            store = MemoryStore()
        elif isinstance(store, str):
            store = open_store(store, async_writes=bool(async_writes), **dict(store_options or {}))
        elif not isinstance(store, CheckpointStore):
            check.fail("store", "a URL, a CheckpointStore or None", store)
        self._aux_now: dict[str, np.ndarray] | None = None  # a background save's scalars
        try:
            self.ckpt = Checkpointer(
                self.state, base, store, aux=self._aux, follows=self.tables.follows
            )
        except BaseException:
            store.close()
            self._remove_hooks()
            raise
        self.policy = base
        self.fence_seconds = 0.0
        self._pending: Future | None = None
        self._pool = None
        if background:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="scar-torch-save")
            fence = self._fence_hook
            self._hooks.append(optimizer.register_step_pre_hook(fence))
            for m in model.modules():
                if any(b.is_floating_point() for _, b in m.named_buffers(recurse=False)):
                    self._hooks.append(m.register_forward_pre_hook(fence))

    def _aux(self) -> dict[str, np.ndarray]:
        return self.tables.aux() if self._aux_now is None else self._aux_now

    # -- background saves -----------------------------------------------------------------
    def _fence_hook(self, *_: object) -> None:
        self._fence()

    def _fence(self) -> None:
        """Wait for the save running in the background, if any (and raise its error)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        t0 = time.perf_counter()
        try:
            pending.result()
        finally:
            self._aux_now = None
            self.fence_seconds += time.perf_counter() - t0

    @property
    def last_save(self) -> SaveResult | None:
        """What the latest finished save wrote."""
        return self.ckpt.last_save

    # -- sparse updates -------------------------------------------------------------------
    def _touched(self, name: str):
        pending = self._sparse[name]

        def hook(p: torch.Tensor) -> None:
            g = p.grad
            if g is not None and g.is_sparse:
                pending.append(g._indices()[0].numpy().copy())
            elif g is not None:
                pending.append(None)  # a dense gradient: any row may change

        return hook

    def _touch(self) -> None:
        if not isinstance(self.policy, TrackedPriority):
            return
        for name in self.ckpt.leaders:
            pending = self._sparse.get(name)
            if pending is None:
                self.policy.touch(name, None)  # dense: every row may have changed
            elif pending:
                if any(x is None for x in pending):
                    self.policy.touch(name, None)
                else:
                    self.policy.touch(name, np.unique(np.concatenate(pending)))
                pending.clear()

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # -- the training loop's calls --------------------------------------------------------
    def step(self, iteration: int) -> SaveResult | None:
        """Call after each optimizer step; saves when the policy is due (the first call saves
        every row). Returns what was saved, if anything."""
        self._fence()
        self.tables.check_bound()
        self._touch()
        if self._pool is None:
            with _torch_threads_kept():
                return self.ckpt.step(iteration)
        if not self.ckpt.due(iteration):
            return None
        self._aux_now = self.tables.aux()  # the scalars and RNG of now, not of later
        self._pending = self._pool.submit(self.ckpt.step, iteration)
        return None

    def save_all(self, iteration: int) -> SaveResult:
        """Save every row now."""
        self._fence()
        self.tables.check_bound()
        self._touch()
        with _torch_threads_kept():
            return self.ckpt.save_all(iteration)

    def fail(self, lost_shards: Iterable[int]) -> dict[str, np.ndarray]:
        """Simulate the loss of shards: their rows of every table become NaN."""
        self._fence()
        return self.ckpt.fail(lost_shards)

    def recover(self, lost_shards: Iterable[int], mode: str = DEFAULT_RECOVERY) -> Recovery:
        """Bring back the rows of ``lost_shards`` into the live model and optimizer, in place.

        ``partial``: only those rows (parameters and optimizer state) are read back, each at
        its last saved value; every other row, the optimizer's step counts and the RNG carry
        on. ``full``: every row goes back to its last saved value and the scalars to the
        newest checkpoint's; ``restart_iteration`` of the result is the iteration to resume
        after (training redoes the ones after it)."""
        check_mode(mode)
        self._fence()
        self.tables.check_bound()
        with _torch_threads_kept():
            rec = self.ckpt.recover(lost_shards, mode)
        if mode == "full":
            self.tables.put_aux(rec.aux)
        self._touch_all()
        return rec

    def restore(self) -> int:
        """Load the newest committed checkpoint into the live model and optimizer, in place
        (a fresh process with the same constructors), and return its iteration: training goes
        on from the next one. Raises :class:`StoreError` if the store holds no checkpoint."""
        self._fence()
        self.tables.check_bound()
        with _torch_threads_kept():
            iteration = self.ckpt.restore()
        self.tables.put_aux(self.ckpt.store.read_aux()[1])
        self._touch_all()
        return iteration

    def _touch_all(self) -> None:
        for pending in self._sparse.values():
            pending.clear()
        if isinstance(self.policy, TrackedPriority):
            self.policy.touch_all()

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def store(self) -> CheckpointStore:
        return self.ckpt.store

    def wait(self) -> None:
        """Block until every save is durable."""
        self._fence()
        self.ckpt.wait()

    def close(self) -> None:
        """Wait for every save, close the store, and remove the hooks."""
        try:
            self._fence()
        finally:
            self._remove_hooks()
            if self._pool is not None:
                self._pool.shutdown()
            self.ckpt.close()

    def __enter__(self) -> TorchCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> list[dict]:
        """The tables: name, rows, width, dtype, and the table a follower follows."""
        return self.tables.describe()
