"""The backend contract: where a store's files live and what each operation promises.

A store's files are named by paths inside the store (``manifests/v0000000007.json``,
``data/...``, ``LOCK``; names.py). A file to write is ``(path, buffers)``; ``buffers`` may be a
:class:`Deferred`, built only when the file is written (so checksums and compression of one file
overlap the I/O of the others). Every ``OSError`` a backend meets becomes a
:class:`~scar.errors.StoreError` naming the store or the file; a missing file is
``FileNotFoundError`` from the reading methods, which the store turns into its own errors.

Two implementations: :class:`~scar.store.backends.local.LocalBackend` (a directory) and
:class:`~scar.store.backends.fsspec.FsspecBackend` (``memory://``, ``s3://``, any fsspec file
system).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable


class Deferred:
    """The buffers of a file, built when the file is written; ``nbytes`` is their size, about."""

    def __init__(self, nbytes: int, build: Callable[[], list]) -> None:
        self.nbytes, self.build = nbytes, build


def buffers_of(b) -> list:
    """The buffers of a file to write (a :class:`Deferred` is built now)."""
    return b.build() if isinstance(b, Deferred) else b


def size_of(b) -> int:
    """The bytes of a file to write, without building a :class:`Deferred`."""
    return b.nbytes if isinstance(b, Deferred) else sum(len(memoryview(x).cast("B")) for x in b)


def read_fully(reader, buf: memoryview) -> int:
    """``reader.readinto`` until ``buf`` is full or the data ends (a file, a decompressor);
    the bytes read."""
    n = 0
    while n < len(buf):
        k = reader.readinto(buf[n:])
        if not k:
            break
        n += k
    return n


def why(e: BaseException) -> str:
    """An error's own words (``strerror`` for an OSError)."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


class Backend(ABC):
    """Where one store's files live. See the module docstring."""

    url: str  # the store, as errors name it
    local: bool  # a local directory (a lock the kernel releases; spare files to write over)
    overwrites: bool  # whether a file may be written again under its name (object stores: no)
    # run by every helper thread a backend starts (fsync, parallel writes) first: the store's
    # async writer at idle priority sets its priority for them too
    thread_init: Callable[[], object] | None = None

    # -- what is there --------------------------------------------------------------------------
    @abstractmethod
    def exists(self) -> bool:
        """Whether the store's folder (or prefix) exists."""

    @abstractmethod
    def is_store(self) -> bool:
        """Whether a store writer has made a store here (committed to it or not)."""

    @abstractmethod
    def list(self, sub: str) -> list[str]:
        """The names in folder ``sub`` ("" for the store's own), sorted; [] if it is not there."""

    @abstractmethod
    def files(self, sub: str) -> list[str]:
        """The files directly in folder ``sub``, as paths inside the store, sorted."""

    @abstractmethod
    def size(self, rel: str) -> int | None:
        """The size of file ``rel`` in bytes, or None if it is not there."""

    # -- reading --------------------------------------------------------------------------------
    @abstractmethod
    def read(self, rel: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes ``start:start+length`` of ``rel`` (fewer if the file is shorter)."""

    @abstractmethod
    def read_into(self, rel: str, start: int, out: memoryview) -> int:
        """Read ``rel`` from ``start`` into ``out``; the bytes read."""

    # -- writing (a writer, under its lock) -------------------------------------------------------
    @abstractmethod
    def make_root(self, subdirs: tuple[str, ...]) -> None:
        """Make (or check) the store's folder for a writer: a folder that holds files but no
        store is refused, and so is a symlinked part of one."""

    @abstractmethod
    def write_files(self, files: list[tuple[str, list]]) -> None:
        """Write files; they are durable when this returns."""

    @abstractmethod
    def publish(self, files: list[tuple[str, list]], rel: str, data) -> None:
        """Write ``files``, then commit ``rel`` atomically (``data``: its bytes, or a function
        returning them, called once the files are written): before the commit ``rel`` does not
        exist, after it it is whole and durable, with the files."""

    @abstractmethod
    def delete(self, rels: list[str]) -> None:
        """Delete files (only names a store writer makes: names.ours); missing ones are fine."""

    def recycle(self, rels: list[str]) -> None:
        """Files no retained manifest lists any more: delete them (a local disk keeps small
        ones to write over)."""
        self.delete(rels)

    def is_spare(self, name: str) -> bool:
        """Whether ``name`` is a retired file kept to write over (never read)."""
        return False

    def is_temporary(self, name: str) -> bool:
        """Whether ``name`` is a writer's temporary file (never read; the next writer deletes
        it)."""
        return False

    # -- the writer lock --------------------------------------------------------------------------
    @abstractmethod
    def lock(self, force: bool = False) -> None:
        """Take the exclusive writer lock, or raise StoreError naming its holder."""

    @abstractmethod
    def check_lock(self) -> None:
        """Raise unless this writer still holds its lock (before every commit)."""

    @abstractmethod
    def unlock(self) -> None:
        """Release the lock (and everything a writer holds: spares, helper threads, folders)."""

    @abstractmethod
    def abandon(self) -> None:
        """Let go as a killed writer does (what a simulated failure leaves behind)."""

    @abstractmethod
    def release(self) -> None:
        """Close what a writer holds open (not the lock)."""

    @abstractmethod
    def lock_owner(self) -> dict | None:
        """The record of the writer holding the lock now, or None."""

    @abstractmethod
    def break_lock(self, force: bool = False) -> dict | None:
        """Remove another writer's lock if it is provably stale (``force``: any); the record
        removed, or None if there was no lock."""

    @abstractmethod
    def destroy(self) -> None:
        """Delete this store's own files and then its empty folders (a store made only to
        probe that a URL is writable). Files a store writer does not make are left."""
