"""Reading a durable store: resolving rows to values, and falling back.

Every read checks the bytes it uses (size and CRC-32C). Rows resolve through the catalog's
live set (catalog.py). A bad or missing segment is recorded in the catalog's ``problems`` (with
a :class:`CheckpointWarning`), and each row it held is read from the newest intact older segment
that holds the row in any retained version up to the view; a row with no such copy raises
:class:`CorruptCheckpointError` naming the bad file. Worker-side arrays fall back the same way,
to the newest intact older aux.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import numpy as np

from ..errors import CorruptCheckpointError, StoreError
from .catalog import RETRIES, Catalog, CheckpointWarning, MissingFile, read_bytes
from .codec import check_values_inplace, decode_aux, decode_values
from .format import Segment, corrupt
from .index import LiveSet, increasing


class Reader:
    """Reads rows and aux arrays of a catalog's view (see the module docstring). ``checked``
    is told the path of every file whose values were read and checked whole."""

    def __init__(self, catalog: Catalog, checked: Callable[[str], object] = lambda path: None):
        self.catalog, self.backend, self._checked = catalog, catalog.backend, checked

    def require_readable(self) -> None:
        """Reads need a committed version, except on a writer's store that has none yet (and
        no unreadable ones): like the in-memory store, it reads zeros saved at iteration -1."""
        c = self.catalog
        if c.view is None and not (c.live is not None and not c.problems):
            c.require_view()

    def with_fallback(self, fn: Callable):
        """Run a read of the view; on a newly found bad file, record it and resolve again
        without it. A read-only store reads one version: when a read fails because a running
        writer retired that version (its manifest is gone), the read starts again on the
        newest version if nothing was read from this one yet, or else raises
        :class:`VersionRetired` - a reader never mixes versions, and never reports as
        corrupt a file that was only retired."""
        c, tries = self.catalog, 0
        while True:
            self.require_readable()
            try:
                out = fn()
                c.served = True
                return out
            except CorruptCheckpointError as e:
                if c.readonly and c.view is not None and c.retired(c.view):
                    if c.pinned or c.served:
                        raise c.gone(c.view) from None
                    tries += 1
                    if tries >= RETRIES:
                        raise StoreError(
                            f"{c.url}: a running writer retires versions faster than they "
                            f"can be read ({tries} tried); read it with more versions kept "
                            "(keep_last) or once it stops"
                        ) from None
                    c.load()
                    continue
                if not c.bad_file(e):
                    raise  # known bad, and nothing older to read instead
                warnings.warn(
                    f"{e}: reading older intact copies of what it held",
                    CheckpointWarning,
                    stacklevel=3,
                )
                c.live = None

    def aux(self) -> tuple[int, dict]:
        """Worker-side arrays of the view, or of the newest intact older aux file."""
        c = self.catalog
        view = c.view
        if view is None or view.aux is None:
            return -1, {}
        if not view.aux.path:
            return view.aux.iteration, {}
        older = {m.aux.path: m.aux for m in c.intact() if m.aux is not None}
        for aux in sorted(older.values(), key=lambda a: -a.version):
            if aux.version <= view.aux.version and aux.path not in c.problems:
                return aux.iteration, decode_aux(
                    read_bytes(self.backend, aux.path, 0, aux.nbytes), aux
                )
        path = view.aux.path
        raise corrupt(path, f"{c.problems[path]}; no older intact copy of the aux arrays")

    def gather(self, t: int, ids: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """Latest saved values of rows ``ids`` (None: all) of table ``t``; rows never saved
        are zero. Whole chunks held by one raw segment are read straight into the result."""
        live = self.catalog.index()
        table = live.tables[t]
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            if ids.size and (ids.min() < 0 or ids.max() >= table.n_rows):
                raise StoreError(
                    f"table {table.name!r}: row ids out of range 0..{table.n_rows - 1}"
                )
        self.check_lost(live, t, slice(None) if ids is None else ids)
        n = table.n_rows if ids is None else len(ids)
        if out is None:
            out = np.zeros((n, table.width), table.dtype)
        elif (
            out.shape != (n, table.width) or out.dtype != table.dtype or not out.flags.c_contiguous
        ):
            raise StoreError(
                f"table {table.name!r}: out must be a C-contiguous {table.dtype} array of shape "
                f"{(n, table.width)}, got {out.dtype} {out.shape}"
            )
        else:
            never = live.owner[t][slice(None) if ids is None else ids] < 0
            out[never] = 0
        if ids is None or increasing(ids):
            rest = []
            for c, p, q in table.by_chunk(ids):
                seg = live.single_owner(t, c) if q - p == table.chunk_rows(c) else None
                if seg is not None and seg.dense:
                    self.values_into(seg, out[p:q])
                else:
                    rest.append(np.arange(p, q))
            where = np.concatenate(rest) if rest else np.empty(0, np.int64)
        else:
            where = np.arange(n)
        if where.size:
            rows = where if ids is None else ids[where]
            owner = live.owner[t][rows]
            order = np.argsort(owner, kind="stable")
            uids, starts = np.unique(owner[order], return_index=True)
            for uid, a, z in zip(uids, starts, [*starts[1:], len(order)], strict=True):
                if uid < 0:
                    continue
                sel, seg = order[a:z], live.segments[int(uid)]
                out[where[sel]] = self.values(seg)[live.positions(t, rows[sel], seg)]
        return out

    def check_lost(self, live: LiveSet, t: int, rows) -> None:
        hit = live.bad_rows(t, rows)
        if hit is not None:
            seg, n = hit
            raise corrupt(
                seg.path,
                f"{self.catalog.problems.get(seg.path, seg.path)}; no older intact copy of {n} row(s) "
                f"of table {live.tables[t].name!r}",
            )

    def values(self, seg: Segment) -> np.ndarray:
        data = read_bytes(self.backend, seg.path, seg.index_bytes, seg.values_bytes)
        out = decode_values(data, seg, self.catalog.tables[seg.table])
        self._checked(seg.path)  # (its index was checked when the view was read)
        return out

    def values_into(self, seg: Segment, out: np.ndarray) -> None:
        """The values of ``seg`` into ``out`` (its rows x width): a raw section is read straight
        into it (checked in place), a compressed one decoded and copied."""
        if seg.codec != "raw" or sys.byteorder != "little":
            out[...] = self.values(seg)
            return
        mv = memoryview(out.reshape(-1).view(np.uint8))  # any dtype (bfloat16 has no buffer format)
        try:
            n = self.backend.read_into(seg.path, seg.index_bytes, mv)
        except FileNotFoundError:
            raise corrupt(seg.path, f"{seg.path}: file is missing", MissingFile) from None
        except OSError as e:
            raise corrupt(seg.path, f"{seg.path}: cannot read ({e})") from None
        check_values_inplace(mv[:n], seg)
        self._checked(seg.path)
