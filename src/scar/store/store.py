"""The durable checkpoint store: versions of row segments on a local disk, in memory or on S3.

    store = open_store("ckpt/run1")                  # or file://, memory://, s3://bucket/prefix
    Checkpointer(state, policy, store)               # the store contract of base.py

Writing (one writer at a time, see backends.py for the lock): a version's segments are written
and made durable, then its manifest is committed (the atomic step); superseded manifests beyond
``keep_last`` and the files no retained manifest lists are deleted after that. A writer that
opens a store removes what a crashed writer left: temporary files and uncommitted segments.
Reading resolves every row through the newest intact manifest; a corrupt or missing file
(checked by size and CRC-32C on every read) is named in a :class:`CheckpointWarning`, and the
rows it held are read from older intact copies (reading.py), or :class:`CorruptCheckpointError`
names it when there are none.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, StoreError
from .backends import backend_for
from .base import CheckpointStore, SaveResult, TableSpec, VersionInfo
from .commit import Committing, Job
from .format import (
    DATA_DIR,
    MANIFEST_DIR,
    TABLE_DTYPES,
    Manifest,
    Table,
    chunk_bounds,
    manifest_name,
)
from .index import LiveSet, increasing
from .reading import RETRIES, CheckpointWarning, Reading, VersionRetired
from .writer import PRIORITIES, BackgroundWriter, SnapshotPool, idle_priority

__all__ = ["CheckpointWarning", "DurableStore", "Snapshot", "VersionRetired", "open_store"]


@dataclass(frozen=True)
class Snapshot:
    """Every table of one version, read as one (:meth:`DurableStore.read_all`)."""

    version: VersionInfo
    tables: dict[str, np.ndarray]
    saved_iterations: dict[str, np.ndarray]  # empty unless asked for
    aux_iteration: int
    aux: dict[str, np.ndarray]


def open_store(url: str, **options) -> DurableStore:
    """Open (creating if needed, and locking) the store at ``url`` for writing; see
    :class:`DurableStore` for the options. ``readonly=True`` opens an existing one to read."""
    return DurableStore(url, **options)


def _fmt(specs: Mapping[str, TableSpec]) -> str:
    return ", ".join(f"{s.name}{(s.n_rows, s.width)}:{s.dtype}" for s in specs.values())


class DurableStore(Committing, Reading, CheckpointStore):
    """A checkpoint store on any backend. ``readonly`` opens an existing store for reading
    (no lock); otherwise the store is created if needed and locked for this writer."""

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        async_writes: bool = False,
        compression: str | None = None,
        keep_last: int | None = 3,
        compact_after: int = 16,
        chunk_bytes: int = 16 << 20,
        fsync: bool = True,
        max_pending: int = 2,
        writer_priority: str = "normal",
        storage_options: dict | None = None,
        force_unlock: bool = False,
    ) -> None:
        if compression not in (None, "zstd"):
            raise ConfigError(f"compression must be zstd or none, got {compression!r}")
        if writer_priority not in PRIORITIES:
            raise ConfigError(
                f"writer_priority must be one of {', '.join(PRIORITIES)}, got {writer_priority!r}"
            )
        if keep_last is not None and keep_last < 1:
            raise ConfigError(f"keep_last must be at least 1, got {keep_last}")
        if compact_after < 2 or chunk_bytes < 1:
            raise ConfigError("compact_after must be >= 2 and chunk_bytes >= 1")
        self.url = url
        self.backend = backend_for(url, storage_options, fsync)
        if async_writes and writer_priority == "idle":
            self.backend.thread_init = idle_priority  # its fsync threads work for the writer
        self.readonly = readonly
        self.compression = compression or "raw"
        self.keep_last, self.compact_after, self.chunk_bytes = keep_last, compact_after, chunk_bytes
        self.specs: dict[str, TableSpec] = {}
        self.problems: dict[str, str] = {}  # bad files found so far: path -> why
        self._tables: tuple[Table, ...] | None = None
        self._manifests: dict[int, Manifest | None] = {}  # None: unreadable
        self._view: Manifest | None = None  # the manifest reads resolve through
        self._live: LiveSet | None = None
        self._refs: Counter = Counter()  # path -> retained manifests that list it
        self._next_version = 0
        self._unchecked: dict = {}  # inherited files not checked whole yet (commit.py)
        self._found = 0  # bad files found so far (``problems`` grew)
        self._pinned = False  # a version chosen with checkout (read-only)
        self._served = False  # a read was served from the view (read-only: it stays)
        self._closed = False
        self._abandoned = False  # stopped as if killed: nothing more is committed
        self._pool = SnapshotPool()
        self._writer = (
            BackgroundWriter(self._write, self._release, max_pending, writer_priority == "idle")
            if async_writes
            else None
        )
        if readonly:
            if not self.backend.exists():
                raise StoreError(f"no checkpoint store at {url}")
            if not self.backend.is_store():  # a folder, but nothing a store writer made
                raise StoreError(
                    f"{url} is not a checkpoint store (it has no {MANIFEST_DIR}/ folder)"
                )
            self._load()
            return
        self.backend.make_root((MANIFEST_DIR, DATA_DIR))
        try:
            self.backend.lock(force=force_unlock)
        except BaseException:
            self.backend.release()
            raise
        try:
            self._load()
            self._unchecked = self._inherited()
            self._warn_unreadable()
            self._clean()
            if self._view is not None:
                self._with_fallback(self._index)
        except BaseException:
            self.backend.unlock()
            raise

    def _inherited(self) -> dict:
        """path -> (segment, its table) or (aux, None): every file the retained manifests
        list, which a writer that opens the store did not write and has not checked."""
        out: dict = {}
        for m in self.intact():
            for seg in m.segments:
                out.setdefault(seg.path, (seg, m.tables[seg.table]))
            if m.aux is not None and m.aux.path:
                out.setdefault(m.aux.path, (m.aux, None))
        return out

    def _warn_unreadable(self) -> None:
        bad = [p for p in self.problems if p.startswith(MANIFEST_DIR)]
        if bad:
            warnings.warn(
                f"{self.url}: {len(bad)} unreadable manifest(s) ({', '.join(bad)}): this writer "
                f"deletes no file they may list (data of versions up to "
                f"{self._unreadable_upto()}); `scar ckpt verify {self.url}` checks the store, "
                "and removing them lets a writer reclaim that space",
                CheckpointWarning,
                stacklevel=3,
            )

    # -- the store contract ------------------------------------------------------------------
    def open(self, specs: Sequence[TableSpec]) -> None:
        self._flush()
        want = {s.name: s for s in specs}
        if self._tables is not None:
            have = {t.name: t.spec for t in self._tables}
            if have != want:
                raise StoreError(
                    f"checkpoint store {self.url} holds tables {_fmt(have)}; the model has "
                    f"{_fmt(want)}"
                )
            return
        if self.readonly:
            self._require_view()
        for s in want.values():
            if s.dtype not in TABLE_DTYPES:
                raise StoreError(f"table {s.name!r}: dtype {s.dtype} is not one of {TABLE_DTYPES}")
        self._tables = tuple(
            Table(
                s.name,
                s.n_rows,
                s.width,
                s.dtype,
                tuple(chunk_bounds(s.n_rows, s.row_bytes, self.chunk_bytes)),
            )
            for s in want.values()
        )
        self.specs = want
        self._live = LiveSet(self._tables)

    def save(self, iteration, rows, aux=None) -> SaveResult:
        if self.readonly or self._closed:
            raise StoreError(
                f"checkpoint store {self.url} is {'read-only' if self.readonly else 'closed'}"
            )
        if self._tables is None:
            raise StoreError("store is not open: call open(specs) first")
        if self._writer is not None:
            self._surface()
        job = self._job(int(iteration), self._check_rows(rows), aux)
        # Bytes as the in-memory store counts them (values, row ids, aux), whatever the codec.
        stored = job.value_bytes + sum(8 * len(ids) for _, ids, _ in job.tables if ids is not None)
        stored += sum(a.nbytes for a in (job.aux or {}).values())
        result = SaveResult(job.version, job.iteration, job.rows, job.value_bytes, stored)
        self._next_version += 1
        if self._writer is not None:
            try:  # a write that failed since the check above is raised here, as by it
                self._surface(lambda: self._writer.submit(job))
            except BaseException:
                self._release(job)  # not queued: its snapshot buffers go back to the pool
                raise
        else:
            try:
                self._write(job)
            except BaseException:
                self._after_failure(job.version)
                raise
        return result

    def _job(self, iteration: int, rows: dict, aux) -> Job:
        index = {t.name: i for i, t in enumerate(self._tables)}
        snap = self._writer is not None
        job = Job(self._next_version, iteration, [], None, set(rows) == set(index))
        for name, (ids, values) in rows.items():
            if ids is not None:
                if not increasing(ids):  # sort; last duplicate wins
                    order = np.argsort(ids, kind="stable")
                    ids = ids[order]
                    last = np.r_[ids[1:] != ids[:-1], True]
                    ids, values = ids[last], values[order][last]
                elif snap:
                    ids, b = self._pool.copy(ids)
                    job.buffers.append(b)
                    values, b = self._pool.copy(values)
                    job.buffers.append(b)
                job.complete &= len(ids) == self._tables[index[name]].n_rows
            elif snap:
                values, b = self._pool.copy(values)
                job.buffers.append(b)
            job.tables.append((index[name], ids, values))
            job.rows += values.shape[0]
            job.value_bytes += values.nbytes
        if aux is not None:
            job.aux = {k: (np.array(v) if snap else np.asarray(v)) for k, v in aux.items()}
            bad = [k for k, v in job.aux.items() if v.dtype.kind not in "biufc"]
            if bad:
                raise StoreError(f"aux arrays {bad} are not plain numbers (no objects are stored)")
        return job

    @property
    def writer_cpu_seconds(self) -> float:
        """CPU time the background writer thread has spent writing (0 when synchronous)."""
        return 0.0 if self._writer is None else self._writer.cpu_seconds

    def _release(self, job: Job) -> None:
        self._pool.give(job.buffers)

    def read_rows(self, table, row_ids=None, out=None):
        """Latest saved value of each row; ``out``: an array to fill instead of a new one."""
        self._flush()
        return self._with_fallback(lambda: self._gather(self._table_index(table), row_ids, out))

    def saved_iteration(self, table, row_ids=None):
        self._flush()

        def get():
            live, t = self._index(), self._table_index(table)
            rows = slice(None) if row_ids is None else np.asarray(row_ids, np.int64)
            self._check_lost(live, t, rows)
            return live.iterations(t, rows)

        return self._with_fallback(get)

    def versions(self) -> list[VersionInfo]:
        self._flush()
        return [
            VersionInfo(m.version, m.iteration, m.complete, m.rows, m.stored_bytes)
            for m in self.intact()
        ]

    def latest(self) -> VersionInfo | None:
        self._flush()
        m = self._view
        return (
            None
            if m is None
            else VersionInfo(m.version, m.iteration, m.complete, m.rows, m.stored_bytes)
        )

    def read_aux(self):
        self._flush()
        return self._with_fallback(self._aux)

    def read_all(self, iterations: bool = False) -> Snapshot:
        """Every table (with each row's saved iteration if ``iterations``) and the aux arrays
        of one version. On a store a writer is changing, a version retired while it is being
        read is read again whole, as of the newest version (a version chosen with
        ``checkout`` raises :class:`VersionRetired` instead): the tables never mix versions."""
        self._flush()
        for _ in range(RETRIES):
            try:
                self._require_view()
                tables, iters = {}, {}
                for name in self.specs:
                    tables[name] = self.read_rows(name)
                    if iterations:
                        iters[name] = self.saved_iteration(name)
                aux_iteration, aux = self.read_aux()
                # (the version read: a retry before anything was served may have moved on)
                return Snapshot(self.latest(), tables, iters, aux_iteration, aux)
            except VersionRetired:
                if self._pinned or not self.readonly:
                    raise
                self._load()
        raise StoreError(
            f"{self.url}: a running writer retires versions faster than they can be read"
        )

    def wait(self) -> None:
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
            if not self.readonly:
                self.backend.unlock()

    def abandon(self) -> None:
        """Stop as if this process were killed (what a simulated failure does): versions not
        committed yet are lost - a write in progress commits only if it has reached its
        commit, the queued ones never run - and the files a crash leaves (uncommitted
        segments, spares) stay for the next writer to delete. The lock is released."""
        if self._closed:
            return
        self._closed = True
        self._abandoned = True
        if self._writer is not None:
            self._writer.abandon()
        if not self.readonly:
            self.backend.abandon()

    def _flush(self) -> None:
        if self._writer is not None:
            self._surface(self._writer.wait)

    def _surface(self, call: Callable | None = None) -> None:
        """Raise a background failure (the versions queued behind it were dropped)."""
        try:
            (call or self._writer.check)()
        except StoreError:
            self._after_failure(self._writer.failed_job.version)
            raise

    def _after_failure(self, version: int) -> None:
        """After the write of ``version`` failed: if its manifest is there nonetheless (the
        commit's rename was done, a later step failed), the version is committed - the store
        reads its state back, as a reopened one would, and never writes that number again
        (rewriting its files would put a committed checkpoint at risk). Otherwise the numbers
        from ``version`` on were never committed and are used again - on a local disk; an
        object store never writes an object twice, so it goes on with the next number (the
        next writer deletes what the failed version left)."""
        try:
            committed = manifest_name(version) in self.backend.list(MANIFEST_DIR)
        except (OSError, StoreError):
            committed = None  # unknown: do not reuse the number
        if committed:
            try:
                self._load()  # the view and the live set now include it
            except (OSError, StoreError):
                pass
        if committed is False and self.backend.overwrites:
            self._next_version = max(self._manifests, default=-1) + 1
        else:
            self._next_version = max(self._next_version, version + 1)

    def _table_index(self, name: str) -> int:
        for i, t in enumerate(self._tables or ()):
            if t.name == name:
                return i
        raise StoreError(f"table {name!r} is not in this store ({sorted(self.specs)})")
