"""The durable checkpoint store: versions of row segments on a local disk, in memory or on S3.

    store = open_store("ckpt/run1")                  # or file://, memory://, s3://bucket/prefix
    Checkpointer(state, policy, store)               # the store contract of base.py

A :class:`DurableStore` is made of explicit parts, each in its module: its options
(:class:`StoreOptions`), a backend (backends/: where the files live, and the writer lock), a
:class:`~scar.store.catalog.Catalog` (the manifests, the version reads resolve through, where
each row's latest intact value lives), a :class:`~scar.store.reading.Reader` (rows and aux
arrays of that version, with fallback to older intact copies), and for a writer a
:class:`~scar.store.commit.Committer` (a version's files, its atomic commit, compaction,
retention) run by a :class:`~scar.store.writer.BackgroundWriter` in async mode.

Writing (one writer at a time): a version's segments are written and made durable, then its
manifest is committed (the atomic step); superseded manifests beyond ``keep_last`` and the files
no retained manifest lists are deleted after that. A writer that opens a store removes what a
crashed writer left: temporary files and uncommitted segments. Reading resolves every row through
the newest intact manifest; a corrupt or missing file (checked by size and CRC-32C on every read)
is named in a :class:`CheckpointWarning`, and the rows it held are read from older intact copies,
or :class:`CorruptCheckpointError` names it when there are none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .. import validation as check
from ..errors import ConfigError, StoreError
from ..validation import DEFAULT_KEEP_LAST
from .backends import backend_for
from .base import CheckpointStore, SaveResult, TableSpec, VersionInfo, mismatch
from .catalog import RETRIES, Catalog, CheckpointWarning, VersionRetired
from .commit import Committer, Job
from .format import TABLE_DTYPES, Manifest, Table, chunk_bounds, manifest_name
from .index import LiveSet, increasing
from .names import DATA_DIR, MANIFEST_DIR
from .reading import Reader
from .writer import PRIORITIES, BackgroundWriter, SnapshotPool, idle_priority

__all__ = [
    "CheckpointWarning",
    "DurableStore",
    "Snapshot",
    "StoreOptions",
    "VersionRetired",
    "open_store",
]


@dataclass(frozen=True)
class StoreOptions:
    """How a :class:`DurableStore` reads and writes (every option, its default)."""

    readonly: bool = False  # open an existing store to read it (no lock)
    async_writes: bool = False  # save() snapshots the rows; a background thread writes them
    compression: str | None = None  # None or "zstd" (each segment, where it saves >= 10 %)
    keep_last: int | None = DEFAULT_KEEP_LAST  # versions kept (None: all)
    compact_after: int = 16  # live segments per chunk before the next write merges them
    chunk_bytes: int = 16 << 20  # a table is cut into chunks of about this many bytes
    fsync: bool = True  # local disks: flush every file and folder a commit needs
    max_pending: int = 2  # async: versions queued before save() waits
    writer_priority: str = "normal"  # "idle": the async writer uses only idle CPU (Linux)
    storage_options: dict | None = None  # passed to fsspec (object stores)
    force_unlock: bool = False  # take the writer lock over whoever holds it

    def __post_init__(self) -> None:
        check.optional(check.one_of, "compression", self.compression, ("zstd",), note="or None")
        check.one_of("writer_priority", self.writer_priority, PRIORITIES)
        check.optional(check.whole, "keep_last", self.keep_last, ge=1, note="or None")
        check.whole("compact_after", self.compact_after, ge=2)
        check.whole("chunk_bytes", self.chunk_bytes, ge=1)


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


class DurableStore(CheckpointStore):
    """A checkpoint store on any backend. ``readonly`` opens an existing store for reading
    (no lock); otherwise the store is created if needed and locked for this writer. Options:
    :class:`StoreOptions`, given as one (``options=``) or as keywords."""

    def __init__(self, url: str, options: StoreOptions | None = None, **kwargs) -> None:
        try:
            opts = replace(options or StoreOptions(), **kwargs)
        except TypeError as e:
            raise ConfigError(f"unknown store option: {e}") from None
        self.options = opts
        self.url = url
        self.readonly = opts.readonly
        self.backend = backend_for(url, opts.storage_options, opts.fsync)
        if opts.async_writes and opts.writer_priority == "idle":
            self.backend.thread_init = idle_priority  # its fsync threads work for the writer
        self.catalog = Catalog(self.backend, url, opts.readonly)
        self.committer: Committer | None = None
        self.reader = Reader(self.catalog, self._checked)
        self._closed = False
        self._pool = SnapshotPool()
        self._writer = None
        if opts.readonly:
            if not self.backend.exists():
                raise StoreError(f"no checkpoint store at {url}")
            if not self.backend.is_store():  # a folder, but nothing a store writer made
                raise StoreError(
                    f"{url} is not a checkpoint store (it has no {MANIFEST_DIR}/ folder)"
                )
            self.catalog.load()
            return
        self.committer = Committer(
            self.catalog, self.reader, opts.compression or "raw", opts.keep_last,
            opts.compact_after,
        )  # fmt: skip
        if opts.async_writes:
            idle = opts.writer_priority == "idle"
            self._writer = BackgroundWriter(self._write, self._release, opts.max_pending, idle)
        self.backend.make_root((MANIFEST_DIR, DATA_DIR))
        try:
            self.backend.lock(force=opts.force_unlock)
        except BaseException:
            self.backend.release()
            raise
        try:
            self.catalog.load()
            self.committer.unchecked = self.catalog.inherited()
            self._warn_unreadable()
            self.committer.clean()
            if self.catalog.view is not None:
                self.reader.with_fallback(self.catalog.index)
        except BaseException:
            self.backend.unlock()
            raise

    # -- what the parts hold ---------------------------------------------------------------------
    @property
    def specs(self) -> dict[str, TableSpec]:
        return {t.name: t.spec for t in self.catalog.tables or ()}

    @property
    def problems(self) -> dict[str, str]:
        """Bad files found so far: path -> what is wrong."""
        return self.catalog.problems

    @property
    def view(self) -> Manifest | None:
        """The manifest reads resolve through (the newest intact one, or a checked-out one)."""
        return self.catalog.view

    def intact(self) -> list[Manifest]:
        """Readable manifests, oldest first."""
        return self.catalog.intact()

    def checkout(self, version: int) -> Manifest:
        """Read through ``version`` from now on (read-only stores)."""
        return self.catalog.checkout(version)

    def _checked(self, path: str) -> None:
        if self.committer is not None:
            self.committer.checked(path)

    def _write(self, job: Job) -> None:
        self.committer.write(job)

    def _warn_unreadable(self) -> None:
        bad = [p for p in self.problems if p.startswith(MANIFEST_DIR)]
        if bad:
            warnings.warn(
                f"{self.url}: {len(bad)} unreadable manifest(s) ({', '.join(bad)}): this writer "
                f"deletes no file they may list (data of versions up to "
                f"{self.catalog.unreadable_upto()}); `scar ckpt verify {self.url}` checks the "
                "store, and removing them lets a writer reclaim that space",
                CheckpointWarning,
                stacklevel=3,
            )

    # -- the store contract ------------------------------------------------------------------
    def open(self, specs: Sequence[TableSpec]) -> None:
        self._flush()
        want = {s.name: s for s in specs}
        cat = self.catalog
        if cat.tables is not None:
            have = {t.name: t.spec for t in cat.tables}
            if have != want:
                raise StoreError(
                    f"checkpoint store {self.url} holds other tables than the model's: "
                    f"{mismatch(have, want)}"
                )
            return
        if self.readonly:
            cat.require_view()
        for s in want.values():
            if s.dtype not in TABLE_DTYPES:
                raise StoreError(f"table {s.name!r}: dtype {s.dtype} is not one of {TABLE_DTYPES}")
        chunk_bytes = self.options.chunk_bytes
        cat.tables = tuple(
            Table(s.name, s.n_rows, s.width, s.dtype,
                  tuple(chunk_bounds(s.n_rows, s.row_bytes, chunk_bytes)))
            for s in want.values()
        )  # fmt: skip
        cat.live = LiveSet(cat.tables)

    def save(self, iteration, rows, aux=None) -> SaveResult:
        if self.readonly or self._closed:
            raise StoreError(
                f"checkpoint store {self.url} is {'read-only' if self.readonly else 'closed'}"
            )
        if self.catalog.tables is None:
            raise StoreError("store is not open: call open(specs) first")
        if self._writer is not None:
            self._surface()
        job = self._job(int(iteration), self._check_rows(rows), aux)
        # Bytes as the in-memory store counts them (values, row ids, aux), whatever the codec.
        stored = job.value_bytes + sum(8 * len(ids) for _, ids, _ in job.tables if ids is not None)
        stored += sum(a.nbytes for a in (job.aux or {}).values())
        result = SaveResult(job.version, job.iteration, job.rows, job.value_bytes, stored)
        self.catalog.next_version += 1
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
        tables = self.catalog.tables
        index = {t.name: i for i, t in enumerate(tables)}
        snap = self._writer is not None
        job = Job(self.catalog.next_version, iteration, [], None, set(rows) == set(index))
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
                job.complete &= len(ids) == tables[index[name]].n_rows
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
        return self.reader.with_fallback(
            lambda: self.reader.gather(self._table_index(table), row_ids, out)
        )

    def saved_iteration(self, table, row_ids=None):
        self._flush()

        def get():
            live, t = self.catalog.index(), self._table_index(table)
            rows = slice(None) if row_ids is None else np.asarray(row_ids, np.int64)
            self.reader.check_lost(live, t, rows)
            return live.iterations(t, rows)

        return self.reader.with_fallback(get)

    def versions(self) -> list[VersionInfo]:
        self._flush()
        return [
            VersionInfo(m.version, m.iteration, m.complete, m.rows, m.stored_bytes)
            for m in self.intact()
        ]

    def latest(self) -> VersionInfo | None:
        self._flush()
        m = self.catalog.view
        return (
            None
            if m is None
            else VersionInfo(m.version, m.iteration, m.complete, m.rows, m.stored_bytes)
        )

    def read_aux(self):
        self._flush()
        return self.reader.with_fallback(self.reader.aux)

    def read_all(self, iterations: bool = False) -> Snapshot:
        """Every table (with each row's saved iteration if ``iterations``) and the aux arrays
        of one version. On a store a writer is changing, a version retired while it is being
        read is read again whole, as of the newest version (a version chosen with
        ``checkout`` raises :class:`VersionRetired` instead): the tables never mix versions."""
        self._flush()
        for _ in range(RETRIES):
            try:
                self.catalog.require_view()
                tables, iters = {}, {}
                for name in self.specs:
                    tables[name] = self.read_rows(name)
                    if iterations:
                        iters[name] = self.saved_iteration(name)
                aux_iteration, aux = self.read_aux()
                # (the version read: a retry before anything was served may have moved on)
                return Snapshot(self.latest(), tables, iters, aux_iteration, aux)
            except VersionRetired:
                if self.catalog.pinned or not self.readonly:
                    raise
                self.catalog.load()
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
        if self.committer is not None:
            self.committer.abandoned = True
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
        cat = self.catalog
        if committed:
            try:
                cat.load()  # the view and the live set now include it
            except (OSError, StoreError):
                pass
        if committed is False and self.backend.overwrites:
            cat.next_version = max(cat.manifests, default=-1) + 1
        else:
            cat.next_version = max(cat.next_version, version + 1)

    def _table_index(self, name: str) -> int:
        for i, t in enumerate(self.catalog.tables or ()):
            if t.name == name:
                return i
        raise StoreError(f"table {name!r} is not in this store ({sorted(self.specs)})")
