"""An in-process checkpoint store: the reference implementation of the store contract.

It keeps, per table, the latest saved value and save iteration of every row, and the list of
committed versions. Nothing is durable; it is what experiments use when durability is not the
point, and what the durable store is tested against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import StoreError
from .base import CheckpointStore, SaveResult, TableSpec, VersionInfo, mismatch


class MemoryStore(CheckpointStore):
    def __init__(self) -> None:
        self.specs: dict[str, TableSpec] = {}
        self._values: dict[str, np.ndarray] = {}
        self._saved_at: dict[str, np.ndarray] = {}
        self._versions: list[VersionInfo] = []
        self._aux: tuple[int, dict[str, np.ndarray]] = (-1, {})

    def open(self, specs: Sequence[TableSpec]) -> None:
        specs = {s.name: s for s in specs}
        if self.specs:
            if specs != self.specs:
                raise StoreError(
                    f"store holds other tables than the model's: {mismatch(self.specs, specs)}"
                )
            return
        self.specs = specs
        for s in specs.values():
            self._values[s.name] = np.zeros((s.n_rows, s.width), dtype=s.dtype)
            self._saved_at[s.name] = np.full(s.n_rows, -1, dtype=np.int64)

    def save(self, iteration, rows, aux=None):
        if not self.specs:
            raise StoreError("store is not open: call open(specs) first")
        rows = self._check_rows(rows)
        if aux is not None:
            aux = {k: np.array(v, copy=True) for k, v in aux.items()}
            bad = [k for k, v in aux.items() if v.dtype.kind not in "biufc"]
            if bad:
                raise StoreError(f"aux arrays {bad} are not plain numbers (no objects are stored)")
        n_rows = value_bytes = stored = 0
        complete = set(rows) == set(self.specs)
        for name, (ids, values) in rows.items():
            if ids is None:
                self._values[name][...] = values
                self._saved_at[name][...] = iteration
            else:
                # Repeated ids: the last one wins, and counts once (as in the durable store).
                last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
                ids, values = ids[last], values[last]
                self._values[name][ids] = values
                self._saved_at[name][ids] = iteration
                complete = complete and len(ids) == self.specs[name].n_rows
                stored += ids.size * 8
            n_rows += values.shape[0]
            value_bytes += values.nbytes
        stored += value_bytes
        if aux is not None:
            self._aux = (iteration, aux)
            stored += sum(v.nbytes for v in aux.values())
        version = len(self._versions)
        self._versions.append(VersionInfo(version, iteration, complete, n_rows, stored))
        return SaveResult(version, iteration, n_rows, value_bytes, stored)

    def read_rows(self, table, row_ids=None, out=None):
        values = self._table(table, self._values)
        if out is None:
            return values.copy() if row_ids is None else values[np.asarray(row_ids, np.int64)]
        n = len(values) if row_ids is None else len(np.asarray(row_ids).reshape(-1))
        if out.shape != (n, values.shape[1]) or out.dtype != values.dtype:
            raise StoreError(
                f"table {table!r}: out must be a {values.dtype} array of shape "
                f"{(n, values.shape[1])}, got {out.dtype} {out.shape}"
            )
        if row_ids is None:
            np.copyto(out, values)
        else:
            np.take(values, np.asarray(row_ids, np.int64), axis=0, out=out)
        return out

    def saved_iteration(self, table, row_ids=None):
        at = self._table(table, self._saved_at)
        return at.copy() if row_ids is None else at[np.asarray(row_ids, dtype=np.int64)]

    def versions(self):
        return list(self._versions)

    def read_aux(self):
        it, arrays = self._aux
        return it, {k: v.copy() for k, v in arrays.items()}

    def _table(self, table: str, where: Mapping[str, np.ndarray]) -> np.ndarray:
        if table not in where:
            raise StoreError(f"table {table!r} is not in this store ({sorted(self.specs)})")
        return where[table]
