"""The checkpoint-store interface.

A store persists rows of named tables. Each :meth:`CheckpointStore.save` is one *version*: a set
of (row ids, values) per table, taken at one training iteration, plus optional worker-side
arrays (``aux``). A version is either complete (every row of every table) or partial. Reading
resolves, for every row, the value of the newest version that contains it, so the saved state of
a priority checkpoint is a mix of rows of different ages (``saved_iteration`` tells each row's).

Contract every implementation keeps:

* ``save`` has copied (or written) everything it needs when it returns: the caller may change
  its arrays right away. It returns a :class:`SaveResult`.
* a version is visible to readers only once it is committed, and then completely;
* ``wait()`` returns once every version saved so far is durable, and re-raises a failure of a
  background write;
* the store knows nothing about algorithms or policies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16", a table dtype)
import numpy as np

from ..errors import StoreError


@dataclass(frozen=True)
class TableSpec:
    """Shape of one stored table."""

    name: str
    n_rows: int
    width: int
    dtype: str = "float32"

    @property
    def row_bytes(self) -> int:
        return self.width * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class SaveResult:
    version: int
    iteration: int
    rows: int  # rows saved, over all tables
    value_bytes: int  # bytes of parameter values saved (what checkpoint policies equalize)
    stored_bytes: int  # bytes the store wrote (values, row ids, metadata)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    iteration: int
    complete: bool
    rows: int
    stored_bytes: int


def mismatch(have: Mapping[str, TableSpec], want: Mapping[str, TableSpec], most: int = 3) -> str:
    """How the tables a store holds (``have``) differ from the ones opened with (``want``), in
    a line: the tables only one side has and those whose shape or dtype differ, ``most`` of
    each kind named."""

    def show(s: TableSpec) -> str:
        return f"{s.name}{(s.n_rows, s.width)}:{s.dtype}"

    def names(items: list[str]) -> str:
        more = f" and {len(items) - most} more" if len(items) > most else ""
        return ", ".join(items[:most]) + more

    parts = []
    if only := [show(have[n]) for n in have if n not in want]:
        parts.append(f"only in the store: {names(only)}")
    if only := [show(want[n]) for n in want if n not in have]:
        parts.append(f"only in the model: {names(only)}")
    if diff := [
        f"{show(have[n])} in the store, {show(want[n])} in the model"
        for n in want
        if n in have and have[n] != want[n]
    ]:
        parts.append(f"different: {names(diff)}")
    return "; ".join(parts)


def specs_of(tables: Mapping[str, np.ndarray]) -> list[TableSpec]:
    return [TableSpec(n, int(a.shape[0]), int(a.shape[1]), a.dtype.name) for n, a in tables.items()]


class CheckpointStore(ABC):
    """Where checkpoints go. See the module docstring for the contract."""

    specs: dict[str, TableSpec]

    @abstractmethod
    def open(self, specs: Sequence[TableSpec]) -> None:
        """Create the store for these tables, or check that an existing one matches them."""

    @abstractmethod
    def save(
        self,
        iteration: int,
        rows: Mapping[str, tuple[np.ndarray | None, np.ndarray]],
        aux: Mapping[str, np.ndarray] | None = None,
    ) -> SaveResult:
        """Save one version: per table, ``(row_ids, values)``; ``row_ids=None`` means all rows.

        A version is complete when it holds every row of every table.
        """

    @abstractmethod
    def read_rows(
        self, table: str, row_ids: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Latest saved value of each row (all rows when ``row_ids`` is None). ``out``: a
        C-contiguous array of the result's shape and dtype to fill and return instead of a new
        one (after an error its contents are undefined)."""

    @abstractmethod
    def saved_iteration(self, table: str, row_ids: np.ndarray | None = None) -> np.ndarray:
        """Iteration at which each row was last saved (-1 if never)."""

    @abstractmethod
    def versions(self) -> list[VersionInfo]:
        """Committed versions, oldest first."""

    @abstractmethod
    def read_aux(self) -> tuple[int, dict[str, np.ndarray]]:
        """(iteration, arrays) of the newest version that carried worker-side arrays."""

    def latest(self) -> VersionInfo | None:
        v = self.versions()
        return v[-1] if v else None

    def wait(self) -> None:
        """Block until every saved version is durable."""

    def close(self) -> None:
        self.wait()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # helpers shared by implementations
    def _check_rows(
        self, rows: Mapping[str, tuple[np.ndarray | None, np.ndarray]]
    ) -> dict[str, tuple[np.ndarray | None, np.ndarray]]:
        out = {}
        for name, (ids, values) in rows.items():
            spec = self.specs.get(name)
            if spec is None:
                raise StoreError(f"table {name!r} is not in this store ({sorted(self.specs)})")
            values = np.asarray(values)
            n = spec.n_rows if ids is None else len(ids)
            if values.shape != (n, spec.width):
                raise StoreError(
                    f"table {name!r}: expected values of shape {(n, spec.width)}, got {values.shape}"
                )
            if ids is not None:
                ids = np.asarray(ids, dtype=np.int64)
                if ids.size and (ids.min() < 0 or ids.max() >= spec.n_rows):
                    raise StoreError(f"table {name!r}: row ids out of range 0..{spec.n_rows - 1}")
            out[name] = (ids, values)
        return out
