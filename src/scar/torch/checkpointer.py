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

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch

from .. import validation as check
from ..checkpoint import Checkpointer
from ..errors import ConfigError, StoreError
from ..policies import Policy, PriorityPolicy, TrackedPriority, make_policy
from ..recovery import Recovery, check_mode
from ..state import State
from ..store.base import CheckpointStore, SaveResult
from ..store.memory import MemoryStore
from ..store.store import open_store
from ..validation import DEFAULT_FRACTION, DEFAULT_POLICY, DEFAULT_RECOVERY
from . import optim, tables
from .tables import Piece

RNG = "torch.rng_state"  # the aux array holding torch's CPU generator state


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
    options (``keep_last``, ``codec``, ``fsync``...) as keywords in ``store_options``.

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
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            check.fail("model", "a torch.nn.Module", model)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            check.fail("optimizer", "a torch.optim.Optimizer or None", optimizer)
        check.whole("shards", shards, ge=1)
        block = tables.check_block(block)
        given = isinstance(policy, Policy)  # a policy object is used as it is
        base = policy if given else make_policy(policy, period, fraction, seed)
        self.model, self.optimizer = model, optimizer
        self._tensors = self._collect()  # name -> live tensor, every check done
        self._pieces = self._lay_out(block)
        arrays = self._views()
        self.state = State(arrays, n_shards=shards)
        follows = {p.table: self._leader[p.table] for p in self._pieces if p.table in self._leader}
        leaders = [p.table for p in self._pieces if p.table not in self._leader]
        self._sparse = {
            p.table: []
            for p in self._pieces
            if id(self._tensors[p.tensor]) in tables.sparse_params(model)
        }
        if type(base) is PriorityPolicy and self._sparse and not given:
            base = TrackedPriority(base, {name: self.state[name].shape[0] for name in leaders})
            self._hooks = [
                self._tensors[name].register_post_accumulate_grad_hook(self._touched(name))
                for name in self._sparse
            ]
        else:
            self._hooks = []
        if store is None:
            store = MemoryStore()
        elif isinstance(store, str):
            store = open_store(store, async_writes=bool(async_writes), **dict(store_options or {}))
        elif not isinstance(store, CheckpointStore):
            check.fail("store", "a URL, a CheckpointStore or None", store)
        try:
            self.ckpt = Checkpointer(self.state, base, store, aux=self._aux, follows=follows)
        except BaseException:
            store.close()
            self._remove_hooks()
            raise
        self.policy = base

    # -- the model as tables ------------------------------------------------------------
    def _collect(self) -> dict[str, torch.Tensor]:
        """Every tensor SCAR keeps as rows, by name: parameters, floating buffers and the
        optimizer's per-parameter state (created here if the optimizer has not stepped)."""
        out: dict[str, torch.Tensor] = {}
        names = {}
        for name, p in self.model.named_parameters():
            tables.check_tensor(f"parameter {name}", p)
            out[name] = p
            names[id(p)] = name
        for name, b in tables.floating_buffers(self.model):
            tables.check_tensor(f"buffer {name}", b)
            out[name] = b
        self._names = names
        self._scalars: dict[str, tuple[dict, str]] = {}
        self._leader: dict[str, str] = {}
        if self.optimizer is None:
            return out
        for i, (group, p) in enumerate(optim.params(self.optimizer)):
            if id(p) not in names:
                raise ConfigError(
                    f"the optimizer holds a tensor that is not a parameter of the model (its "
                    f"parameter {i}, shape {tuple(p.shape)}): give TorchCheckpointer the model "
                    "that owns every tensor the optimizer updates"
                )
            optim.tensor_keys(self.optimizer, group)  # an unsupported optimizer fails here
        optim.materialize(self.optimizer)
        for group, p in optim.params(self.optimizer):
            name, state = names[id(p)], self.optimizer.state[p]
            for key in optim.tensor_keys(self.optimizer, group):
                t = state[key]
                tables.check_tensor(f"optimizer state {name}@{key}", t)
                out[f"{name}@{key}"] = t
            for key in optim.scalar_keys(self.optimizer):
                self._scalars[f"{name}@{key}"] = (state, key)
        return out

    def _lay_out(self, block: int | None) -> list[Piece]:
        kept = tables.row_kept_params(self.model)
        out = []
        for name, t in self._tensors.items():
            owner = name.split("@", 1)[0]
            rows_kept = id(self._tensors[owner]) in kept
            parts = tables.pieces(name, t, rows_kept=rows_kept, block=block)
            if "@" in name:  # optimizer state: laid out like its parameter, following it
                for part in parts:
                    self._leader[part.table] = owner + part.table[len(name) :]
            out.extend(parts)
        return out

    def _views(self) -> dict[str, np.ndarray]:
        flat = {name: tables.numpy_view(t) for name, t in self._tensors.items()}
        self._ptrs = {name: t.data_ptr() for name, t in self._tensors.items()}
        return {p.table: tables.piece_view(flat[p.tensor], p) for p in self._pieces}

    def _check_bound(self) -> None:
        """The live tensors are still the ones the tables view (not replaced, e.g. by an
        optimizer's ``load_state_dict`` or an assignment to ``param.data``)."""
        for name, t in self._tensors.items():
            now = self._current(name)
            if now is not t or now.data_ptr() != self._ptrs[name]:
                raise StoreError(
                    f"tensor {name} was replaced since the checkpointer started (load_state_dict "
                    "or .data = ...?): copy values in place (tensor.copy_) or make a new "
                    "TorchCheckpointer"
                )

    def _current(self, name: str) -> torch.Tensor:
        if "@" in name and self.optimizer is not None:
            owner, key = name.split("@", 1)
            p = self._tensors[owner]
            return self.optimizer.state[p].get(key)
        return self._tensors[name]

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

    # -- aux: scalars, integer buffers, the RNG -------------------------------------------
    def _aux(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (state, key) in self._scalars.items():
            v = state[key]
            out[name] = v.detach().numpy().copy() if torch.is_tensor(v) else np.asarray(v)
        for name, b in self._int_buffers():
            out[name] = b.detach().numpy().copy()
        out[RNG] = torch.get_rng_state().numpy().copy()
        return out

    def _int_buffers(self):
        persistent = set(self.model.state_dict(keep_vars=True))
        for name, b in self.model.named_buffers():
            if name in persistent and not b.is_floating_point():
                yield name, b

    def _put_aux(self, aux: Mapping[str, np.ndarray]) -> None:
        for name, (state, key) in self._scalars.items():
            if name not in aux:
                continue
            v = state[key]
            if torch.is_tensor(v):
                v.copy_(torch.from_numpy(np.array(aux[name]).reshape(tuple(v.shape))).to(v.dtype))
            else:
                state[key] = type(v)(aux[name].item())
        for name, b in self._int_buffers():
            if name in aux:
                b.copy_(torch.from_numpy(np.array(aux[name]).reshape(tuple(b.shape))))
        if RNG in aux:
            torch.set_rng_state(torch.from_numpy(np.array(aux[RNG], dtype=np.uint8)))

    # -- the training loop's calls --------------------------------------------------------
    def step(self, iteration: int) -> SaveResult | None:
        """Call after each optimizer step; saves when the policy is due (the first call saves
        every row). Returns what was saved, if anything."""
        self._check_bound()
        self._touch()
        with _torch_threads_kept():
            return self.ckpt.step(iteration)

    def save_all(self, iteration: int) -> SaveResult:
        """Save every row now."""
        self._check_bound()
        self._touch()
        with _torch_threads_kept():
            return self.ckpt.save_all(iteration)

    def fail(self, lost_shards: Iterable[int]) -> dict[str, np.ndarray]:
        """Simulate the loss of shards: their rows of every table become NaN."""
        return self.ckpt.fail(lost_shards)

    def recover(self, lost_shards: Iterable[int], mode: str = DEFAULT_RECOVERY) -> Recovery:
        """Bring back the rows of ``lost_shards`` into the live model and optimizer, in place.

        ``partial``: only those rows (parameters and optimizer state) are read back, each at
        its last saved value; every other row, the optimizer's step counts and the RNG carry
        on. ``full``: every row goes back to its last saved value and the scalars to the
        newest checkpoint's; ``restart_iteration`` of the result is the iteration to resume
        after (training redoes the ones after it)."""
        check_mode(mode)
        self._check_bound()
        with _torch_threads_kept():
            rec = self.ckpt.recover(lost_shards, mode)
        if mode == "full":
            self._put_aux(rec.aux)
        self._touch_all()
        return rec

    def restore(self) -> int:
        """Load the newest committed checkpoint into the live model and optimizer, in place
        (a fresh process with the same constructors), and return its iteration: training goes
        on from the next one. Raises :class:`StoreError` if the store holds no checkpoint."""
        self._check_bound()
        with _torch_threads_kept():
            iteration = self.ckpt.restore()
        self._put_aux(self.ckpt.store.read_aux()[1])
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
        self.ckpt.wait()

    def close(self) -> None:
        """Wait for every save, close the store, and remove the gradient hooks."""
        self._remove_hooks()
        self.ckpt.close()

    def __enter__(self) -> TorchCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> list[dict]:
        """The tables: name, rows, width, dtype, and the table a follower follows."""
        return [
            {
                "table": p.table,
                "rows": p.n_rows,
                "width": p.width,
                "dtype": self.state[p.table].dtype.name,
                "follows": self._leader.get(p.table),
            }
            for p in self._pieces
        ]
