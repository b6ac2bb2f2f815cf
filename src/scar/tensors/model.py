"""``TorchTables``: one model and optimizer, seen as row tables (the layout: :mod:`.layout`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .. import validation as check
from ..errors import ConfigError, StoreError
from . import layout, optim
from .layout import Piece

RNG = "torch.rng_state"  # the aux array holding torch's CPU generator state


class TorchTables:
    """The tables of ``model`` (parameters, floating buffers) and ``optimizer`` (its
    per-parameter state, created here if it has not stepped), as numpy views of the tensors.

    ``arrays``: table name -> (rows, width) view; ``follows``: each optimizer-state table ->
    its parameter's table; ``sparse``: the tables of embeddings with sparse gradients.
    ``aux()`` / ``put_aux()``: the scalars (optimizer steps, integer buffers, and with ``rng``
    torch's CPU generator state) as arrays and back."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        block: int | None = None,
        rng: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            check.fail("model", "a torch.nn.Module", model)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            check.fail("optimizer", "a torch.optim.Optimizer or None", optimizer)
        block = layout.check_block(block)
        self.model, self.optimizer, self.rng = model, optimizer, rng
        self.tensors = self._collect()  # name -> live tensor, every check done
        self.pieces = self._lay_out(block)
        flat = {name: layout.numpy_view(t) for name, t in self.tensors.items()}
        self._ptrs = {name: t.data_ptr() for name, t in self.tensors.items()}
        self.arrays = {p.table: layout.piece_view(flat[p.tensor], p) for p in self.pieces}
        sparse = layout.sparse_params(model)
        self.sparse = [p.table for p in self.pieces if id(self.tensors[p.tensor]) in sparse]

    # -- building -----------------------------------------------------------------------
    def _collect(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        names = {}
        for name, p in self.model.named_parameters():
            layout.check_tensor(f"parameter {name}", p)
            out[name] = p
            names[id(p)] = name
        self._int_buffers: list[str] = []  # read through get_buffer: always the live one
        for name, b in layout.persistent_buffers(self.model):
            if not b.is_floating_point():
                self._int_buffers.append(name)
                continue
            layout.check_tensor(f"buffer {name}", b)
            out[name] = b
        self._scalars: dict[str, tuple[dict, str]] = {}
        self.follows: dict[str, str] = {}  # optimizer-state table -> its parameter's
        if self.optimizer is None:
            return out
        for i, (group, p) in enumerate(optim.params(self.optimizer)):
            if id(p) not in names:
                raise ConfigError(
                    f"the optimizer holds a tensor that is not a parameter of the model (its "
                    f"parameter {i}, shape {tuple(p.shape)}): give the model that owns every "
                    "tensor the optimizer updates"
                )
            optim.tensor_keys(self.optimizer, group)  # an unsupported optimizer fails here
        optim.materialize(self.optimizer)
        for group, p in optim.params(self.optimizer):
            name, state = names[id(p)], self.optimizer.state[p]
            for key in optim.tensor_keys(self.optimizer, group):
                t = state[key]
                layout.check_tensor(f"optimizer state {name}@{key}", t)
                out[f"{name}@{key}"] = t
            for key in optim.scalar_keys(self.optimizer):
                self._scalars[f"{name}@{key}"] = (state, key)
        return out

    def _lay_out(self, block: int | None) -> list[Piece]:
        kept = layout.row_kept_params(self.model)
        out = []
        for name, t in self.tensors.items():
            owner = name.split("@", 1)[0]
            rows_kept = id(self.tensors[owner]) in kept
            parts = layout.pieces(name, t, rows_kept=rows_kept, block=block)
            if "@" in name:  # optimizer state: laid out like its parameter, following it
                for part in parts:
                    self.follows[part.table] = owner + part.table[len(name) :]
            out.extend(parts)
        return out

    # -- checks -------------------------------------------------------------------------
    def check_bound(self) -> None:
        """The live tensors are still the ones the tables view (not replaced, e.g. by an
        optimizer's ``load_state_dict`` or an assignment to ``param.data``)."""
        for name, t in self.tensors.items():
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
            return self.optimizer.state[self.tensors[owner]].get(key)
        return self.tensors[name]

    # -- aux: scalars, integer buffers, the RNG -------------------------------------------
    def aux(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (state, key) in self._scalars.items():
            v = state[key]
            out[name] = v.detach().numpy().copy() if torch.is_tensor(v) else np.asarray(v)
        for name in self._int_buffers:
            out[name] = self.model.get_buffer(name).detach().numpy().copy()
        if self.rng:
            out[RNG] = torch.get_rng_state().numpy().copy()
        return out

    def put_aux(self, aux: Mapping[str, np.ndarray]) -> None:
        for name, (state, key) in self._scalars.items():
            if name not in aux:
                continue
            v = state[key]
            if torch.is_tensor(v):
                v.copy_(torch.from_numpy(np.array(aux[name]).reshape(tuple(v.shape))).to(v.dtype))
            else:
                state[key] = type(v)(aux[name].item())
        for name in self._int_buffers:
            if name in aux:
                b = self.model.get_buffer(name)
                b.copy_(torch.from_numpy(np.array(aux[name]).reshape(tuple(b.shape))))
        if self.rng and RNG in aux:
            torch.set_rng_state(torch.from_numpy(np.array(aux[RNG], dtype=np.uint8)))

    def describe(self) -> list[dict]:
        """The tables: name, rows, width, dtype, and the table a follower follows."""
        return [
            {
                "table": p.table,
                "rows": p.n_rows,
                "width": p.width,
                "dtype": self.arrays[p.table].dtype.name,
                "follows": self.follows.get(p.table),
            }
            for p in self.pieces
        ]
