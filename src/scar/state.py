"""Model state as named tables of rows, and the sharding of rows onto parameter-server shards.

A *table* is a 2-D float array; a *row* is the unit of ownership, of checkpoint priority and of
loss. Every table's rows are split into the same number of shards ``S``; a failure of shard ``s``
destroys that shard's rows in every table (a parameter-server node owns a slice of every table).

Two layouts are offered: ``"range"`` (contiguous row ranges of near-equal size, the default) and
``"hash"`` (row ``i`` lives on shard ``hash(i) mod S``; spreads hot rows, e.g. frequent words).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from . import validation as check
from .errors import ConfigError
from .validation import DEFAULT_SHARDING

SHARDING_SCHEMES = ("range", "hash")


@dataclass(frozen=True)
class Sharding:
    """Assignment of ``n_rows`` rows to ``n_shards`` shards."""

    n_rows: int
    n_shards: int
    scheme: str = DEFAULT_SHARDING

    def __post_init__(self) -> None:
        check.whole("n_shards", self.n_shards, ge=1)
        check.whole("n_rows", self.n_rows, ge=0)
        check.one_of("scheme", self.scheme, SHARDING_SCHEMES)

    def shard_of(self, rows: np.ndarray | int) -> np.ndarray:
        """Shard id of each row id."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.scheme == "range":
            # Shard s owns [bounds[s], bounds[s+1]).
            return np.searchsorted(self.bounds, rows, side="right") - 1
        return _mix(rows) % self.n_shards

    @property
    def bounds(self) -> np.ndarray:
        """Row boundaries of the range layout: shard ``s`` owns ``bounds[s]:bounds[s+1]``."""
        return np.linspace(0, self.n_rows, self.n_shards + 1).round().astype(np.int64)

    def rows_of(self, shards: Iterable[int] | int) -> np.ndarray:
        """Sorted row ids owned by the given shard(s)."""
        shards = np.atleast_1d(np.asarray(list(shards) if not np.isscalar(shards) else shards))
        shards = shards.astype(np.int64)
        if shards.size and (shards.min() < 0 or shards.max() >= self.n_shards):
            check.fail("shards", f"shard ids in 0..{self.n_shards - 1}", shards.tolist())
        if self.scheme == "range":
            b = self.bounds
            parts = [np.arange(b[s], b[s + 1], dtype=np.int64) for s in np.unique(shards)]
            return np.concatenate(parts) if parts else np.empty(0, np.int64)
        mask = np.isin(self.shard_of(np.arange(self.n_rows)), shards)
        return np.flatnonzero(mask).astype(np.int64)

    def rows_per_shard(self) -> np.ndarray:
        if self.scheme == "range":
            return np.diff(self.bounds)
        return np.bincount(self.shard_of(np.arange(self.n_rows)), minlength=self.n_shards)


def _mix(rows: np.ndarray) -> np.ndarray:
    """A fixed integer hash (splitmix64 finaliser) so the hash layout is stable across runs."""
    x = rows.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(1 << 62)).astype(np.int64)


class State(Mapping[str, np.ndarray]):
    """Named 2-D tables sharing one shard count.

    The state owns its arrays; algorithms update them in place. ``State`` is a read-only mapping
    of table name to array (the arrays themselves are writable).
    """

    def __init__(
        self, tables: Mapping[str, np.ndarray], n_shards: int = 8, scheme: str = DEFAULT_SHARDING
    ) -> None:
        if not tables:
            check.fail("tables", "at least one table", tables)
        self._tables: dict[str, np.ndarray] = {}
        self.shardings: dict[str, Sharding] = {}
        for name, arr in tables.items():
            arr = np.asarray(arr)
            if arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2:
                raise ConfigError(f"table {name!r} must be 1-D or 2-D, got shape {arr.shape}")
            if not (np.issubdtype(arr.dtype, np.floating) or arr.dtype.name == "bfloat16"):
                raise ConfigError(f"table {name!r} must hold floats, got {arr.dtype}")
            self._tables[name] = np.ascontiguousarray(arr)
            self.shardings[name] = Sharding(arr.shape[0], n_shards, scheme)
        self.n_shards = n_shards
        self.scheme = scheme

    def __getitem__(self, name: str) -> np.ndarray:
        return self._tables[name]

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        """Overwrite a table's values in place (``state["w"] += g`` works; tables cannot be
        added or reshaped: checkpoints and shards are laid out for the shapes given at start)."""
        table = self._tables.get(name)
        if table is None:
            raise ConfigError(f"no table {name!r} in this state ({', '.join(self._tables)})")
        if values is not table:
            values = np.asarray(values)
            if values.shape != table.shape:
                raise ConfigError(f"table {name!r} has shape {table.shape}, got {values.shape}")
            np.copyto(table, values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    @property
    def n_rows(self) -> int:
        return sum(t.shape[0] for t in self._tables.values())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tables.values())

    def rows_of(self, shards: Iterable[int]) -> dict[str, np.ndarray]:
        """Row ids of the given shards, per table."""
        shards = list(shards)
        return {name: sh.rows_of(shards) for name, sh in self.shardings.items()}

    def copy(self) -> dict[str, np.ndarray]:
        return {name: t.copy() for name, t in self._tables.items()}

    def assign(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite every table in place with ``values`` (same shapes)."""
        for name, t in self._tables.items():
            np.copyto(t, values[name])
