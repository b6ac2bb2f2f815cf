"""A PyTorch model and optimizer seen as SCAR's row tables, sharing memory with the live tensors.

* A parameter of an ``nn.Embedding`` / ``nn.EmbeddingBag`` keeps its rows: row ``i`` is
  embedding ``i``.
* Any other tensor (a parameter or a floating buffer) is viewed as rows of ``block``
  consecutive elements of its flattened storage. When ``block`` does not divide its size, the
  last, short block is a one-row table of its own, ``<name>#tail``; a tensor no larger than a
  block is one row.
* An optimizer's per-parameter state tensors (SGD's ``momentum_buffer``, Adam's ``exp_avg``
  and ``exp_avg_sq``...) are tables ``<name>@<key>`` laid out row for row like their
  parameter; its per-parameter scalars (Adam's ``step``) are aux arrays ``<name>@<key>``.

Every table is a numpy view of the tensor's storage (no copy): SCAR's saves read the rows they
choose straight from the live tensors, and restores write into them. ``bfloat16`` tensors are
viewed with ``ml_dtypes.bfloat16`` (the store keeps their raw 2-byte pattern).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .. import validation as check
from ..errors import ConfigError

ROW_BYTES = 512  # the default block makes a row of about this many bytes
TAIL = "#tail"
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Piece:
    """One table: rows ``[start, stop)`` of a tensor's flat storage, ``width`` elements a row."""

    table: str
    tensor: str  # the tensor's name (a parameter, buffer, or parameter@optimizer-key)
    start: int
    stop: int
    width: int

    @property
    def n_rows(self) -> int:
        return (self.stop - self.start) // self.width


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """The tensor's storage as a flat numpy array, no copy (bfloat16 through ml_dtypes)."""
    flat = t.detach().reshape(-1)
    if flat.data_ptr() != t.data_ptr() or not t.is_contiguous():
        raise ConfigError("tensor must be contiguous to be shared with the checkpoint store")
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return flat.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return flat.numpy()


def pieces(name: str, t: torch.Tensor, *, rows_kept: bool, block: int | None) -> list[Piece]:
    """How tensor ``name`` becomes tables: its own rows (``rows_kept``, an embedding's 2-D
    weight) or blocks of ``block`` elements (default: ``ROW_BYTES`` bytes a row)."""
    n = t.numel()
    if rows_kept and t.dim() == 2:
        return [Piece(name, name, 0, n, int(t.shape[1]))] if n else []
    if n == 0:
        return []
    width = block if block is not None else max(1, ROW_BYTES // t.element_size())
    if n <= width:
        return [Piece(name, name, 0, n, n)]
    full = n // width * width
    out = [Piece(name, name, 0, full, width)]
    if full < n:
        out.append(Piece(name + TAIL, name, full, n, n - full))
    return out


def piece_view(flat: np.ndarray, p: Piece) -> np.ndarray:
    return flat[p.start : p.stop].reshape(p.n_rows, p.width)


def check_tensor(name: str, t: torch.Tensor) -> None:
    """A tensor SCAR can share: on the CPU, one of the supported float dtypes, contiguous."""
    if t.device.type != "cpu":
        raise ConfigError(
            f"{name} is on {t.device}; TorchCheckpointer shares tensors' memory with the store "
            "and works with CPU tensors only (this build of torch has no CUDA)"
        )
    if t.dtype not in DTYPES:
        raise ConfigError(
            f"{name} has dtype {str(t.dtype).removeprefix('torch.')}; the tables take "
            "float16, bfloat16, float32 or float64"
        )
    if not t.is_contiguous():
        raise ConfigError(f"{name} is not contiguous: its rows cannot be shared with the store")


def row_kept_params(model: torch.nn.Module) -> set[int]:
    """The ids of parameters whose rows are kept as such: embedding weights."""
    kinds = (torch.nn.Embedding, torch.nn.EmbeddingBag)
    return {id(m.weight) for m in model.modules() if isinstance(m, kinds)}


def sparse_params(model: torch.nn.Module) -> set[int]:
    """The ids of embedding weights whose gradients are sparse (only the rows a batch
    touched are in the gradient: the candidates for a priority save)."""
    kinds = (torch.nn.Embedding, torch.nn.EmbeddingBag)
    return {id(m.weight) for m in model.modules() if isinstance(m, kinds) and m.sparse}


def persistent_buffers(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's persistent buffers (those in its state dict: BatchNorm's running statistics
    and batch counter...): state that a restore must bring back with the parameters. The
    floating ones become tables, the others aux arrays."""
    persistent = set(model.state_dict(keep_vars=True))
    for name, b in model.named_buffers():
        if name in persistent:
            yield name, b


def check_block(block: int | None) -> int | None:
    return None if block is None else check.whole("block", block, ge=1)
