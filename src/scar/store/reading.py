"""Reading a durable store: choosing the version to read, resolving rows, falling back.

A mixin of :class:`~scar.store.store.DurableStore` (it uses the attributes set there).
Every read checks the bytes it uses (size and CRC-32C). Reads resolve through the newest intact
manifest (the *view*); an unreadable manifest is skipped. A bad or missing segment is recorded
in ``problems`` (with a :class:`CheckpointWarning`), and each row it held is read from the newest
intact older segment that holds the row in any retained version up to the view — "an older
intact version for those rows". A row with no such copy raises :class:`CorruptCheckpointError`
naming the bad file. Worker-side arrays fall back the same way, to the newest intact older aux.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Callable

import numpy as np

from ..errors import CorruptCheckpointError, StoreError
from .codec import check_values_inplace, decode_aux, decode_index, decode_values
from .format import (
    DATA_DIR,
    MANIFEST_DIR,
    Manifest,
    Segment,
    corrupt,
    decode_manifest,
    manifest_name,
    manifest_version,
)
from .index import LiveSet, increasing


class CheckpointWarning(UserWarning):
    """A checkpoint file is corrupt or missing; an older intact copy is read instead."""


class MissingFile(CorruptCheckpointError):
    """A file a manifest lists is not there (deleted, or retired by a writer meanwhile)."""


class VersionRetired(StoreError):
    """The version being read was retired by a running writer (``keep_last``) midway."""


RETRIES = 50  # reads of a live store started again on a newer version before giving up


class Reading:
    """Loading manifests, choosing the view, resolving rows (see the module docstring)."""

    def _load(self) -> None:
        """Read every manifest and choose the view (the newest intact one). A reader of a
        store that a writer is changing may find a manifest gone, or read one while it is
        retired: only a manifest still listed afterwards counts as unreadable."""
        for _ in range(RETRIES):
            names = [n for n in self.backend.list(MANIFEST_DIR) if manifest_version(n) is not None]
            manifests, bad, gone = {}, {}, False
            for name in names:
                path = f"{MANIFEST_DIR}/{name}"
                v = manifest_version(name)
                try:
                    manifests[v] = decode_manifest(self.backend.read(path), path)
                except FileNotFoundError:
                    gone = True  # retired by a writer meanwhile
                except OSError as e:
                    raise StoreError(f"cannot read {self.url}/{path}: {e}") from None
                except CorruptCheckpointError as e:
                    bad[path] = str(e)
                    manifests[v] = None
            if bad and self.readonly:  # read while a writer retired it?
                now = set(self.backend.list(MANIFEST_DIR))
                for path in [p for p in bad if p.rsplit("/", 1)[-1] not in now]:
                    del bad[path]
                    del manifests[manifest_version(path.rsplit("/", 1)[-1])]
                    gone = True
            if gone and not any(m is not None for m in manifests.values()):
                continue  # every manifest seen was retired: list again
            break
        self.problems = {p: w for p, w in self.problems.items() if not p.startswith(MANIFEST_DIR)}
        self.problems.update(bad)
        self._manifests = manifests
        self._next_version = max(self._next_version, max(self._manifests, default=-1) + 1)
        self._refs = Counter(p for m in self.intact() for p in m.paths())
        self._served = False
        self._choose_view()

    def intact(self) -> list[Manifest]:
        """Readable manifests, oldest first."""
        return [m for _, m in sorted(self._manifests.items()) if m is not None]

    def _choose_view(self) -> None:
        intact = self.intact()
        self._view, self._live = (intact[-1] if intact else None), None
        if self._view is None:
            return
        self._tables = self._view.tables
        self.specs = {t.name: t.spec for t in self._tables}
        newest = max(self._manifests)
        if newest != self._view.version:
            bad = [why for p, why in self.problems.items() if p.startswith(MANIFEST_DIR)]
            warnings.warn(
                f"{self.url}: {'; '.join(bad)}: reading checkpoint version {self._view.version} "
                f"(iteration {self._view.iteration}) instead of version {newest}",
                CheckpointWarning,
                stacklevel=4,
            )

    def _require_view(self) -> Manifest:
        if self._view is None:
            if self.problems:
                raise CorruptCheckpointError(
                    f"no intact checkpoint in {self.url}: " + "; ".join(self.problems.values())
                )
            raise StoreError(f"no committed checkpoint in {self.url}")
        return self._view

    def _require_readable(self) -> None:
        """Reads need a committed version, except on a writer's store that has none yet (and
        no unreadable ones): like the in-memory store, it reads zeros saved at iteration -1."""
        if self._view is None and not (self._live is not None and not self.problems):
            self._require_view()

    def checkout(self, version: int) -> Manifest:
        """Read through ``version`` from now on (read-only stores)."""
        if not self.readonly:
            raise StoreError("checkout is for read-only stores")
        m = self._manifests.get(version)
        if m is None:
            why = self.problems.get(f"{MANIFEST_DIR}/{manifest_name(version)}", "no such version")
            raise StoreError(f"cannot read version {version} of {self.url}: {why}")
        self._view, self._live, self._tables = m, None, m.tables
        self.specs = {t.name: t.spec for t in m.tables}
        self._pinned, self._served = True, False
        return m

    def _candidates(self, view: Manifest) -> list[Segment]:
        """The segments to resolve rows through, in the order they override each other: the
        view's own list, or - once a segment is known bad - every segment of every retained
        version up to the view with the same tables (a writer never changes them: one that
        differs was not written by it), so that older copies can stand in for the bad one's
        rows."""
        if not any(p.startswith(DATA_DIR) for p in self.problems):
            return list(view.segments)
        found: dict[str, Segment] = {}
        for m in self.intact():
            if m.version <= view.version and m.tables == view.tables:
                for seg in m.segments:
                    found.setdefault(seg.path, seg)
        return sorted(found.values(), key=lambda s: (s.version, s.table, s.chunk))

    def _index(self) -> LiveSet:
        """The live set of the view: which segment holds each row's latest intact value."""
        if self._live is None:
            view = self._require_view()
            live = LiveSet(view.tables)
            for seg in self._candidates(view):
                table = view.tables[seg.table]
                if seg.path in self.problems:
                    try:
                        ids = None if seg.dense else self._ids(seg, table)[0]
                    except CorruptCheckpointError:
                        ids = None  # rows unknown: count it as holding its whole chunk
                    live.apply_bad(seg, ids)
                    continue
                ids, iters = self._ids(seg, table)
                live.apply([(seg, None if seg.dense else ids, iters)])
            self._live = live
        return self._live

    def _ids(self, seg: Segment, table) -> tuple:
        if seg.dense and not seg.row_iters:
            return None, None
        return decode_index(self._read(seg.path, 0, seg.index_bytes), seg, table)

    def _read(self, path: str, start: int, length: int) -> bytes:
        try:
            return self.backend.read(path, start, length) if length else b""
        except FileNotFoundError:
            raise corrupt(path, f"{path}: file is missing", MissingFile) from None
        except OSError as e:
            raise corrupt(path, f"{path}: cannot read ({e})") from None

    def _with_fallback(self, fn: Callable):
        """Run a read of the view; on a newly found bad file, record it and resolve again
        without it. A read-only store reads one version: when a read fails because a running
        writer retired that version (its manifest is gone), the read starts again on the
        newest version if nothing was read from this one yet, or else raises
        :class:`VersionRetired` - a reader never mixes versions, and never reports as
        corrupt a file that was only retired."""
        tries = 0
        while True:
            self._require_readable()
            try:
                out = fn()
                self._served = True
                return out
            except CorruptCheckpointError as e:
                if self.readonly and self._view is not None and self._retired(self._view):
                    if self._pinned or self._served:
                        raise self._gone(self._view) from None
                    tries += 1
                    if tries >= RETRIES:
                        raise StoreError(
                            f"{self.url}: a running writer retires versions faster than they "
                            f"can be read ({tries} tried); read it with more versions kept "
                            "(keep_last) or once it stops"
                        ) from None
                    self._load()
                    continue
                if not self._bad_file(e):
                    raise  # known bad, and nothing older to read instead
                warnings.warn(
                    f"{e}: reading older intact copies of what it held",
                    CheckpointWarning,
                    stacklevel=3,
                )
                self._live = None

    def _bad_file(self, e: CorruptCheckpointError) -> bool:
        """Record the bad file ``e`` names; False if it names none, or one known already."""
        path = getattr(e, "path", None)
        if path is None or path in self.problems:
            return False
        self.problems[path] = str(e)
        self._found += 1
        return True

    def _retired(self, view: Manifest) -> bool:
        """Whether a writer has retired ``view`` since it was read (its manifest is gone)."""
        try:
            return manifest_name(view.version) not in self.backend.list(MANIFEST_DIR)
        except StoreError:
            return False

    def _gone(self, view: Manifest) -> VersionRetired:
        return VersionRetired(
            f"version {view.version} (iteration {view.iteration}) of {self.url} was retired by "
            "a running writer while it was being read: read again"
            + (" (choose a version it still keeps: `scar ckpt ls`)" if self._pinned else "")
        )

    def _aux(self) -> tuple[int, dict]:
        """Worker-side arrays of the view, or of the newest intact older aux file."""
        view = self._view
        if view is None or view.aux is None:
            return -1, {}
        if not view.aux.path:
            return view.aux.iteration, {}
        older = {m.aux.path: m.aux for m in self.intact() if m.aux is not None}
        for aux in sorted(older.values(), key=lambda a: -a.version):
            if aux.version <= view.aux.version and aux.path not in self.problems:
                return aux.iteration, decode_aux(self._read(aux.path, 0, aux.nbytes), aux)
        path = view.aux.path
        raise corrupt(path, f"{self.problems[path]}; no older intact copy of the aux arrays")

    def _gather(self, t: int, ids: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """Latest saved values of rows ``ids`` (None: all) of table ``t``; rows never saved
        are zero. Whole chunks held by one raw segment are read straight into the result."""
        live = self._index()
        table = live.tables[t]
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            if ids.size and (ids.min() < 0 or ids.max() >= table.n_rows):
                raise StoreError(
                    f"table {table.name!r}: row ids out of range 0..{table.n_rows - 1}"
                )
        self._check_lost(live, t, slice(None) if ids is None else ids)
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
                    self._values_into(seg, out[p:q])
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
                out[where[sel]] = self._values(seg)[live.positions(t, rows[sel], seg)]
        return out

    def _check_lost(self, live: LiveSet, t: int, rows) -> None:
        hit = live.bad_rows(t, rows)
        if hit is not None:
            seg, n = hit
            raise corrupt(
                seg.path,
                f"{self.problems.get(seg.path, seg.path)}; no older intact copy of {n} row(s) "
                f"of table {live.tables[t].name!r}",
            )

    def _values(self, seg: Segment) -> np.ndarray:
        data = self._read(seg.path, seg.index_bytes, seg.values_bytes)
        out = decode_values(data, seg, self._live.tables[seg.table])
        self._unchecked.pop(seg.path, None)  # (its index was checked when the view was read)
        return out

    def _values_into(self, seg: Segment, out: np.ndarray) -> None:
        """The values of ``seg`` into ``out`` (its rows x width): a raw section is read straight
        into it (checked in place), a compressed one decoded and copied."""
        if seg.codec != "raw" or sys.byteorder != "little":
            out[...] = self._values(seg)
            return
        mv = memoryview(out.reshape(-1)).cast("B")
        try:
            n = self.backend.read_into(seg.path, seg.index_bytes, mv)
        except FileNotFoundError:
            raise corrupt(seg.path, f"{seg.path}: file is missing", MissingFile) from None
        except OSError as e:
            raise corrupt(seg.path, f"{seg.path}: cannot read ({e})") from None
        check_values_inplace(mv[:n], seg)
        self._unchecked.pop(seg.path, None)
