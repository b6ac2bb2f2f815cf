"""A store's files in a directory on a local file system (see ``LocalBackend``)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ...errors import StoreError
from ..names import DATA_DIR, LOCK_NAME, MANIFEST_DIR, foreign, is_spare, is_temporary, ours
from . import lease
from .base import Backend, buffers_of, read_fully, size_of, why
from .flush import SYNC_FILE_RANGE_WRITE, fsync_path, start_writeback
from .lock import FileLock
from .spares import Spares

PARALLEL_BYTES = 8 << 20  # write files on two threads when a batch is larger than this
# A batch smaller than this is flushed by fsyncs one after another, not concurrently: flushing
# files on helper threads pays off for large batches only, and costs a small one up to 17 %
# more CPU (a 32768-row sparse version: benchmarks/store_small_versions.py, large mode).
LARGE_BATCH = 4 << 20
KEEP_OPEN = 32  # a small batch of at most this many files keeps them open from write to fsync
SPARE_MARK = ".spare-"  # a spare's name in its folder: <folder>/.spare-<hex>
_datasync = getattr(os, "fdatasync", os.fsync)  # data and the size, not the times
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
WRITE_BYTES = 64 << 20  # one write() call; a file's write-back starts every this many bytes


Written = tuple[str, "int | None"]  # a file written: its path, and its descriptor if still open


def _close(files: list[Written]) -> None:
    """Close the descriptors still open among ``files`` (each once: safe to call again)."""
    for i, (rel, fd) in enumerate(files):
        if fd is not None:
            files[i] = (rel, None)
            with contextlib.suppress(OSError):
                os.close(fd)


class LocalBackend(Backend):
    """A directory on a local file system.

    A writer (``make_root``) holds its folders open: the store's own folder, ``manifests/``
    and ``data/``, each opened without following a symbolic link, and every file it creates,
    renames, flushes or deletes is named relative to those descriptors (``dir_fd``), opened
    with ``O_NOFOLLOW``. So nothing it does can reach outside the folder it checked, whatever
    is renamed or linked there meanwhile: a symlinked ``data/``, ``manifests/`` or ``LOCK`` is
    refused, and a link planted under a store file's name is never written through. Readers
    open files by path, never following a link at the last step."""

    local = True
    overwrites = True  # a data file of a version that failed to commit is written again

    def __init__(self, root: str, fsync: bool = True) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root
        self.fsync = fsync
        self._lock = FileLock(
            self._p(LOCK_NAME), self.root, lambda flags: self._open(LOCK_NAME, flags)
        )
        self._fds: dict[str, int] = {}  # a writer's folders ("": the store's), kept open
        self._pool: ThreadPoolExecutor | None = None
        self._spares = Spares()  # retired files kept to be written over (see recycle)
        # run by every helper thread (fsync, parallel writes) first: the store's async writer
        # at idle priority sets its priority for them too
        self.thread_init: Callable[[], object] | None = None

    def _p(self, rel: str) -> str:
        if not rel:
            return self.root
        if os.sep == "/":  # (a join per file touched: the plain concatenation costs a tenth)
            return self.root.rstrip("/") + "/" + rel
        return os.path.join(self.root, *rel.split("/"))

    def _at(self, rel: str) -> tuple[str, int | None]:
        """(the name to use, the folder descriptor it is relative to): a writer's files are
        named relative to its folders; a reader's by path (descriptor None)."""
        folder, _, name = rel.rpartition("/")
        fd = self._fds.get(folder)
        return (name, fd) if fd is not None else (self._p(rel), None)

    def _open(self, rel: str, flags: int, mode: int = 0o644) -> int:
        name, fd = self._at(rel)
        return os.open(name, flags | _NOFOLLOW | _CLOEXEC, mode, dir_fd=fd)

    def _rename(self, src: str, dst: str) -> None:
        a, fa = self._at(src)
        b, fb = self._at(dst)
        os.rename(a, b, src_dir_fd=fa, dst_dir_fd=fb)

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def is_store(self) -> bool:
        """Whether a writer has made a store here (its manifests folder), committed or not."""
        return os.path.isdir(self._p(MANIFEST_DIR)) and not os.path.islink(self._p(MANIFEST_DIR))

    def make_root(self, subdirs: tuple[str, ...]) -> None:
        """Make (or check) the store's folder for a writer and open its folders: a folder that
        holds files but no store is refused, and so is a symlinked part of a store."""
        try:
            made, p = [], self.root  # folders created: their parents' entries must be flushed
            while not os.path.isdir(p) and p != os.path.dirname(p):
                made.append(p)
                p = os.path.dirname(p)
            os.makedirs(self.root, exist_ok=True)
            root = self._fds[""] = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
            for part in (*subdirs, LOCK_NAME):
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISLNK(os.stat(part, dir_fd=root, follow_symlinks=False).st_mode):
                        raise StoreError(
                            f"{self._p(part)} is a symbolic link: a store's folders and lock "
                            "must be its own (refusing to follow it)"
                        )
            if not self.is_store():
                entries = os.listdir(root)
                data = []
                if DATA_DIR in entries:
                    data = os.listdir(self._folder(DATA_DIR, create=False))
                alien = foreign(entries, data)
                if alien:
                    raise StoreError(
                        f"{self.root} holds files but no checkpoint store ({', '.join(alien[:3])}"
                        f"{', ...' if len(alien) > 3 else ''}): a store is written to a new or "
                        "empty folder, or to one a store writer made"
                    )
            new = [d for d in subdirs if not os.path.lexists(self._p(d))]
            for d in subdirs:
                self._folder(d, create=True)
            if self.fsync:
                for parent in sorted({os.path.dirname(p) for p in made}):
                    fsync_path(parent)
                if new:
                    os.fsync(root)
            probe = f".probe-{uuid.uuid4().hex}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, dir_fd=root))
            os.unlink(probe, dir_fd=root)
        except StoreError:
            self.release()
            raise
        except OSError as e:
            self.release()
            raise StoreError(f"cannot write checkpoint store {self.root}: {why(e)}") from None

    def _folder(self, name: str, create: bool) -> int:
        """Open folder ``name`` of the store (made if ``create``), refusing a symbolic link."""
        fd = self._fds.get(name)
        if fd is not None:
            return fd
        root = self._fds.get("")
        if root is None:  # not a writer's: by path, never through a link
            return os.open(self._p(name), os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=root)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=root)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self._p(name)):
                raise StoreError(
                    f"{self._p(name)} is a symbolic link: a store's folders must be its own "
                    "(refusing to follow it)"
                ) from None
            raise
        self._fds[name] = fd
        return fd

    def list(self, sub: str) -> list[str]:
        fd = self._fds.get(sub)
        try:
            return sorted(os.listdir(fd if fd is not None else self._p(sub)))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot list {self._p(sub)}: {why(e)}") from None

    def files(self, sub: str) -> list[str]:
        """The files directly in folder ``sub``, as paths inside the store (no subfolders, no
        symbolic links followed)."""
        fd = self._fds.get(sub)
        try:
            with os.scandir(fd if fd is not None else self._p(sub)) as it:
                names = [e.name for e in it if not e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot list {self._p(sub)}: {why(e)}") from None
        return sorted(f"{sub}/{n}" for n in names)

    def size(self, rel: str) -> int | None:
        """The size of file ``rel`` in bytes, or None if it is not there."""
        name, fd = self._at(rel)
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            return None

    def read(self, rel: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes ``start:start+length`` (fewer if the file is shorter: the caller checks)."""
        with open(self._open(rel, os.O_RDONLY), "rb") as f:
            if start:
                f.seek(start)
            return f.read() if length is None else f.read(length)

    def read_into(self, rel: str, start: int, out: memoryview) -> int:
        with open(self._open(rel, os.O_RDONLY), "rb", buffering=0) as f:
            f.seek(start)
            return read_fully(f, out)

    def _write_one(self, rel: str, buffers: list, keep_open: bool = False) -> Written:
        """Write a file, starting its write-back every ``WRITE_BYTES`` written and at its end
        (the caller fsyncs it later, with the rest of its batch); with ``keep_open``, its
        descriptor stays open for that fsync. Write-back starts by whole spans, not by buffer:
        a segment is several buffers (header, row ids, values), and starting each one's
        write-back as it was written submitted the page two of them share twice. The file is
        new, or a spare of as many blocks written over (``recycle``)."""
        early = self.fsync and start_writeback is not None
        bufs = buffers_of(buffers)
        size = size_of(bufs)
        fd = self._over_spare(rel, size)
        if fd is None:
            fd = self._open(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            done = started = 0
            for b in bufs:
                mv = memoryview(b).cast("B")
                while len(mv):
                    n = os.write(fd, mv[:WRITE_BYTES])
                    mv = mv[n:]
                    done += n
                    if early and done - started >= WRITE_BYTES:
                        start_writeback(fd, started, done - started, SYNC_FILE_RANGE_WRITE)
                        started = done
            if early and done > started:
                start_writeback(fd, started, done - started, SYNC_FILE_RANGE_WRITE)
        except BaseException:
            os.close(fd)
            raise
        if keep_open:
            return rel, fd
        os.close(fd)
        return rel, None

    def _fsync_all(self, files: list[Written], dirs: list[str], concurrent: bool = False) -> None:
        """fsync written ``files`` (on their descriptors, where still open: the caller closes
        them) and directories ``dirs`` (``concurrent``: on helper threads, so the file system
        commits them together). A directory's descriptor stays open for its next flush (one
        a store writes to is flushed at every version)."""
        if not self.fsync or not (files or dirs):
            return

        def one(file: Written) -> None:
            rel, fd = file
            if fd is not None:
                _datasync(fd)
                return
            fd = self._open(rel, os.O_RDONLY)
            try:
                _datasync(fd)
            finally:
                os.close(fd)

        def one_dir(rel: str) -> None:
            os.fsync(self._folder(rel, create=False))

        calls = [(one, f) for f in files] + [(one_dir, d) for d in dirs]
        if len(calls) == 1 or not concurrent:
            for f, arg in calls:
                f(arg)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                4, thread_name_prefix="scar-fsync", initializer=self.thread_init
            )
        list(self._pool.map(lambda call: call[0](call[1]), calls))

    def _write_all(
        self, files: list[tuple[str, list]], written: list[Written]
    ) -> tuple[list[str], bool]:
        """Write files, each appended to ``written`` as it is (a small batch's left open: the
        caller closes them, whatever happens); return the directories that still need an
        fsync (theirs and the parents of new ones) and whether the batch is large (to be
        flushed concurrently).
        Each file's write-back starts as soon as it is written, so the disk works while the
        rest is written (on two threads for a very large batch), and the caller's fsyncs find
        the data mostly on disk already. On a journaled file system the first fsync commits
        the journal once for every file of the batch (their blocks were allocated when their
        write-back started) and the others find their metadata committed: one forced commit
        for the batch, not one per file. Measured on a file system without a journal (each
        fsync writes its file's inode, and a new file's directory, and flushes the disk's
        cache), this order costs 4-16 % less machine CPU per small version than fsyncing each
        file as it is written, and starting the write-back early 6-9 % less than leaving it
        to the fsyncs (``files`` vs ``files_each`` and ``files_late`` in
        benchmarks/commit_schemes.py)."""
        pending = sorted({rel.rsplit("/", 1)[0] for rel, _ in files})
        total = sum(size_of(bufs) for _, bufs in files)
        large = total >= LARGE_BATCH
        if total > PARALLEL_BYTES and len(files) > 1:
            with ThreadPoolExecutor(2, initializer=self.thread_init) as pool:
                written += pool.map(lambda f: self._write_one(*f), files)
            return pending, large
        keep = not large and len(files) < KEEP_OPEN
        for rel, bufs in files:
            written.append(self._write_one(rel, bufs, keep_open=keep))
        return pending, large

    def write_files(self, files: list[tuple[str, list]]) -> None:
        written: list[Written] = []
        try:
            dirs, large = self._write_all(files, written)
            self._fsync_all(written, dirs, concurrent=large)
        except OSError as e:
            raise StoreError(f"cannot write to checkpoint store {self.root}: {why(e)}") from None
        finally:
            _close(written)

    def commit(self, rel: str, data: bytes) -> None:
        self.publish([], rel, data)

    def publish(self, files: list[tuple[str, list]], rel: str, data) -> None:
        """Write ``files``, then commit ``rel`` (``data``: its bytes, or a function returning
        them, called once the files are written) atomically: the files, the temporary
        manifest and their directories flushed together (``_write_all``), then, after the
        rename, the manifest's directory."""
        d, name = rel.rsplit("/", 1)
        tmp = f"{d}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
        written: list[Written] = []
        try:
            dirs, large = self._write_all(files, written) if files else ([], False)
            manifest = data() if callable(data) else data
            written.append(self._write_one(tmp, [manifest], keep_open=not large))
            self._fsync_all(written, dirs, concurrent=large)
            self._rename(tmp, rel)
            self._fsync_all([], [d])
            self._spares.committed({*dirs, d} if self.fsync else None)
        except OSError as e:
            with contextlib.suppress(OSError):
                self._unlink(tmp)
            raise StoreError(f"cannot write to checkpoint store {self.root}: {why(e)}") from None
        finally:
            _close(written)

    def _unlink(self, rel: str) -> None:
        if not ours(rel):  # the one place a file is deleted: only names a writer makes
            raise StoreError(f"refusing to delete {self._p(rel)}: not a file a store writes")
        name, fd = self._at(rel)
        os.unlink(name, dir_fd=fd)

    def delete(self, rels: list[str]) -> None:
        for rel in rels:
            try:
                self._unlink(rel)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise StoreError(f"cannot delete {self._p(rel)}: {why(e)}") from None

    def recycle(self, rels: list[str]) -> None:
        """Files no retained manifest lists any more: small ones are kept as spares (renamed
        to ``.spare-<hex>`` in their folder) and a later file of as many blocks is written
        over one in place (``_write_one``), the others deleted. A sparse priority save
        writes files of one size every time: reusing them frees and allocates no blocks, so
        the file system has no allocation to flush and no freed blocks to discard (see
        :class:`Spares` for when a spare may be written over, and benchmarks/
        store_small_versions.py for what it saves). The writer deletes its spares when it
        closes the store; after a crash, the next writer does (they are in no manifest)."""
        for rel in rels:
            try:
                if not ours(rel):
                    raise StoreError(
                        f"refusing to delete {self._p(rel)}: not a file a store writes"
                    )
                name, fd = self._at(rel)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (
                    not stat.S_ISREG(st.st_mode)
                    or st.st_nlink != 1
                    or not self._spares.keeps(st.st_size)
                ):
                    self._unlink(rel)
                    continue
                folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
                spare = f"{folder}{SPARE_MARK}{uuid.uuid4().hex[:12]}"
                self._rename(rel, spare)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise StoreError(f"cannot delete {self._p(rel)}: {why(e)}") from None
            self._spares.retired(spare, st.st_size)

    def _over_spare(self, rel: str, size: int) -> int | None:
        """A spare of as many blocks as ``size`` bytes renamed to ``rel`` and cut to ``size``
        (its blocks are written over in place): its descriptor, or None if there is none."""
        spare = self._spares.take(size)
        if spare is None:
            return None
        name, had = spare
        try:
            self._rename(name, rel)
        except FileNotFoundError:  # deleted behind the writer's back: a new file, then
            return None
        fd = self._open(rel, os.O_WRONLY)
        if had != size:
            try:
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def destroy(self) -> None:
        self.release()
        for d in (MANIFEST_DIR, DATA_DIR):
            self.delete([p for p in self.files(d) if ours(p)])
            with contextlib.suppress(OSError):
                os.rmdir(self._p(d))
        self.delete([LOCK_NAME])
        with contextlib.suppress(OSError):
            os.rmdir(self.root)

    def is_spare(self, name: str) -> bool:
        return is_spare(name)

    def is_temporary(self, name: str) -> bool:
        """A writer's temporary file (an uncommitted manifest, a spare): never read."""
        return is_temporary(name)

    # -- the writer lock ---------------------------------------------------------------------
    def lock(self, force: bool = False) -> None:
        """``flock`` on ``LOCK`` (lock.py): the kernel releases it when the writer dies."""
        self._lock.take()

    def __del__(self) -> None:
        self.unlock()  # a store dropped without close() must not keep its lock

    def unlock(self) -> None:
        if getattr(self, "_spares", None) is not None:
            with contextlib.suppress(OSError, StoreError):  # (the next writer deletes the rest)
                self.delete(self._spares.drop())
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            self._pool = None
        self.release()
        if getattr(self, "_lock", None) is not None:
            self._lock.release()

    def abandon(self) -> None:
        """Let go as a killed writer does: its spares stay (the next writer deletes them),
        its folders and lock are closed (the kernel would release the flock)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.release()
        self._lock.release(clear=False)

    def release(self) -> None:
        """Close the folders a writer holds open (its files are named by path from now on)."""
        fds, self._fds = getattr(self, "_fds", {}), {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def lock_owner(self) -> dict | None:
        """The writer holding the lock now, or None."""
        return self._lock.holder()

    def check_lock(self) -> None:
        pass  # an flock is held until this process closes it: never lost

    def break_lock(self, force: bool = False) -> dict | None:
        """An flock dies with its process: there is never a stale one to remove."""
        owner = self.lock_owner()
        if owner is not None:  # a live process holds the flock: nothing a file removal frees
            raise StoreError(
                f"{self.root} is locked by a running writer ({lease.describe(owner)}); a local "
                "lock is released by the kernel when its writer exits: stop that process"
            )
        return None
