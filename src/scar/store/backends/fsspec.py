"""A store's objects on any fsspec file system: ``memory://``, ``s3://`` (see ``FsspecBackend``)."""

from __future__ import annotations

import contextlib
import errno
import json
import time
import uuid

from ...errors import StoreError
from ..names import DATA_DIR, LOCK_NAME, MANIFEST_DIR, foreign, ours
from . import lease
from .base import Backend, buffers_of, why

_SDKS = ("botocore", "aiobotocore", "s3fs", "aiohttp")


class _OSErrors:
    """A filesystem whose calls raise the errors of the cloud SDK under it (no credentials, an
    endpoint that does not answer, a refused request) as ``OSError``, like fsspec's own: every
    backend method turns those into a :class:`StoreError` naming the store."""

    def __init__(self, fs) -> None:
        self._fs = fs

    def __getattr__(self, name: str):
        attr = getattr(self._fs, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except OSError:
                raise
            except Exception as e:
                if type(e).__module__.split(".", 1)[0] in _SDKS:
                    raise OSError(errno.EIO, f"{type(e).__name__}: {e}") from e
                raise

        return call


class FsspecBackend(Backend):
    """Any fsspec filesystem: ``memory://``, ``s3://`` (through s3fs), ...

    Objects are never written over: a data file is put only if absent, so a second writer
    (one that broke a live writer's lock by force) fails instead of replacing a committed
    segment, and a version whose write failed is not written again under its number
    (``overwrites``). The lock is a lease (lease.py), renewed while the writer runs; on S3 it
    is renewed and removed only if it is still this writer's (conditional requests)."""

    local = False
    overwrites = False

    def __init__(
        self, url: str, storage_options: dict | None = None, lease_seconds: float | None = None
    ) -> None:
        import fsspec

        opts = dict(storage_options or {})
        if url.startswith(("s3://", "s3a://")):
            opts.setdefault("use_listings_cache", False)
        try:
            fs, root = fsspec.core.url_to_fs(url, **opts)
        except (ImportError, ValueError) as e:
            raise StoreError(f"cannot open checkpoint store {url}: {e}") from None
        self.fs = _OSErrors(fs)
        self._s3 = hasattr(fs, "call_s3")  # conditional puts and deletes (If-Match)
        self.root = root.rstrip("/")
        self.url = url.rstrip("/")
        self.lease_seconds = lease.TTL if lease_seconds is None else lease_seconds
        self._token: str | None = None
        self._etag: str | None = None  # of this writer's lock object (S3)
        self._renewer: lease.Renewer | None = None
        self._record: dict = {}

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _wrap(self, what: str, e: BaseException) -> StoreError:
        return StoreError(f"cannot {what} checkpoint store {self.url}: {why(e)}")

    def exists(self) -> bool:
        try:
            return bool(self.fs.exists(self._p(LOCK_NAME)) or self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._wrap("read", e) from None

    def is_store(self) -> bool:
        """Whether a writer holds a store here (its lock) or has committed to one (manifests;
        an object store has no folders to make before that)."""
        try:
            if self.fs.exists(self._p(LOCK_NAME)):
                return True
            return bool(self.fs.ls(self._p(MANIFEST_DIR), detail=False))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._wrap("read", e) from None

    def make_root(self, subdirs: tuple[str, ...]) -> None:
        """Check that a writer may write here (a prefix holding objects but no store is
        refused) and can."""
        if not self.is_store():
            entries = self.list("")
            data = self.list(DATA_DIR) if DATA_DIR in entries else []
            alien = foreign(entries, data)
            if alien:
                raise StoreError(
                    f"{self.url} holds objects but no checkpoint store ({', '.join(alien[:3])}"
                    f"{', ...' if len(alien) > 3 else ''}): a store is written to a new or "
                    "empty prefix, or to one a store writer made"
                )
        probe = self._p(f".probe-{uuid.uuid4().hex}")
        try:
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except (OSError, ValueError) as e:
            raise self._wrap("write", e) from None

    def list(self, sub: str) -> list[str]:
        try:
            return sorted(
                p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._p(sub), detail=False)
            )
        except FileNotFoundError:
            return []
        except OSError as e:
            raise self._wrap("list", e) from None

    def files(self, sub: str) -> list[str]:
        """The objects directly under ``sub/``, as paths inside the store."""
        try:
            found = self.fs.ls(self._p(sub), detail=True)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise self._wrap("list", e) from None
        names = [f["name"].rstrip("/").rsplit("/", 1)[-1] for f in found if f["type"] == "file"]
        return sorted(f"{sub}/{n}" for n in names)

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.info(self._p(rel))["size"])
        except FileNotFoundError:
            return None

    def read(self, rel: str, start: int = 0, length: int | None = None) -> bytes:
        end = None if length is None else start + length
        if start == 0 and end is None:
            return self.fs.cat_file(self._p(rel))
        try:
            return self.fs.cat_file(self._p(rel), start=start, end=end)
        except FileNotFoundError:
            raise
        except (ValueError, OSError) as e:  # a range beyond the end of a truncated object
            if isinstance(e, ValueError) or e.errno == errno.EINVAL:
                return b""
            raise

    def read_into(self, rel: str, start: int, out: memoryview) -> int:
        data = self.read(rel, start, len(out))
        out[: len(data)] = data
        return len(data)

    def write_files(self, files: list[tuple[str, list]]) -> None:
        self.check_lock()
        try:
            self.fs.pipe(
                {self._p(rel): b"".join(buffers_of(bufs)) for rel, bufs in files}, mode="create"
            )
        except FileExistsError:
            raise StoreError(
                f"cannot write to checkpoint store {self.url}: a file of this version exists "
                "already (another writer is writing to this store)"
            ) from None
        except (OSError, ValueError) as e:
            raise self._wrap("write to", e) from None

    def publish(self, files: list[tuple[str, list]], rel: str, data) -> None:
        if files:
            self.write_files(files)
        self.commit(rel, data() if callable(data) else data)

    def commit(self, rel: str, data: bytes) -> None:
        self.check_lock()
        try:
            self.fs.pipe_file(self._p(rel), data, mode="create")
        except FileExistsError:
            # A retried put whose first attempt succeeded (its reply was lost) finds its own
            # object: that is our commit, done. Anything else is another writer's.
            with contextlib.suppress(OSError):
                if self.fs.cat_file(self._p(rel)) == data:
                    return
            raise StoreError(f"{self.url}/{rel} exists: another writer committed it") from None
        except (OSError, ValueError) as e:
            raise self._wrap("commit to", e) from None

    def delete(self, rels: list[str]) -> None:
        bad = [r for r in rels if not ours(r)]
        if bad:
            raise StoreError(f"refusing to delete {self.url}/{bad[0]}: not a file a store writes")
        if rels:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm([self._p(r) for r in rels])

    # (no spares: an object is never written over in place, and no temporary objects: a put
    # appears whole or not at all)

    def destroy(self) -> None:
        names = [f"{LOCK_NAME}"] + [p for d in (MANIFEST_DIR, DATA_DIR) for p in self.files(d)]
        self.delete([p for p in names if ours(p)])

    # -- the writer lock: a lease (lease.py) ---------------------------------------------------
    def lock(self, force: bool = False) -> None:
        """Create ``LOCK`` with put-if-absent, and renew it while this writer runs. A lock
        whose holder is provably gone, or whose lease has expired, is taken over (only if it
        is still the one judged: a conditional delete on S3); ``force`` takes any over."""
        self._token = uuid.uuid4().hex
        now = time.time()
        self._record = {
            **lease.identity(),
            "since": now,
            "token": self._token,
            "ttl": self.lease_seconds,
        }
        for _ in range(4):
            try:
                self._etag = self._put_lock(create=True)
                break
            except FileExistsError:
                owner, etag = self._read_lock()
                if owner is None and etag is None:
                    continue  # gone meanwhile: try again
                why = "forced" if force else lease.why_breakable(owner)
                if why is None:
                    raise StoreError(
                        f"checkpoint store {self.url} is in use by {lease.describe(owner)}: one "
                        "writer at a time (if that writer is dead, its lock can be removed "
                        "once its lease expires: `scar ckpt unlock URL`)"
                    ) from None
                self._remove_lock(etag)
            except (OSError, ValueError) as e:
                raise self._wrap("lock", e) from None
        else:
            raise StoreError(f"cannot lock checkpoint store {self.url}: the lock keeps changing")
        self._renewer = lease.Renewer(self._renew, self.lease_seconds, self.url)

    def _put_lock(self, create: bool = False, match: str | None = None) -> str | None:
        """Write this writer's lock record (renewed now): its ETag on S3."""
        self._record["renewed"] = time.time()
        body = json.dumps(self._record).encode()
        if create:
            out = self.fs.pipe_file(self._p(LOCK_NAME), body, mode="create")
        elif match is not None:
            out = self.fs.pipe_file(self._p(LOCK_NAME), body, IfMatch=match)
        else:
            out = self.fs.pipe_file(self._p(LOCK_NAME), body)
        return out.get("ETag") if isinstance(out, dict) else None

    def _read_lock(self) -> tuple[dict | None, str | None]:
        """(the lock record, its ETag on S3 or "" elsewhere); (None, None) if there is none;
        (None, etag) for an object that is no lock record."""
        for attempt in range(10):
            try:
                with self.fs.open(self._p(LOCK_NAME), "rb") as f:
                    data = f.read()
                    etag = (getattr(f, "details", None) or {}).get("ETag", "") if self._s3 else ""
                break
            except FileNotFoundError:
                return None, None
            except OSError as e:  # renewed between s3fs's HEAD and its GET (If-Match): again
                if attempt == 9 or not _changed(e):
                    raise
        try:
            owner = json.loads(data)
        except (ValueError, RecursionError):
            owner = None
        return (owner if isinstance(owner, dict) else None), etag

    def _remove_lock(self, etag: str | None) -> bool:
        """Delete ``LOCK`` if it is still the object of ``etag`` (S3); whether it was."""
        try:
            if self._s3 and etag:
                bucket, key = self.fs.split_path(self._p(LOCK_NAME))[:2]
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
            else:
                self.fs.rm_file(self._p(LOCK_NAME))
        except FileNotFoundError:
            return False
        except OSError as e:
            if _precondition(e):
                return False
            raise
        return True

    def _renew(self) -> bool:
        """Renew this writer's lease; False if the lock is someone else's now."""
        if self._s3 and self._etag:
            try:
                self._etag = self._put_lock(match=self._etag)
            except OSError as e:
                if _precondition(e) or isinstance(e, FileNotFoundError):
                    return False
                raise
            return True
        owner, _ = self._read_lock()
        if not owner or owner.get("token") != self._token:
            return False
        self._put_lock()
        return True

    def __del__(self) -> None:
        renewer = getattr(self, "_renewer", None)
        if renewer is not None:  # dropped without close(): the lease lapses
            renewer.halt()

    def check_lock(self) -> None:
        """Raise unless this writer still holds its lease (called before every write)."""
        if self._renewer is not None:
            self._renewer.check()

    def unlock(self) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None
        if self._token is not None:
            with contextlib.suppress(OSError):
                owner, etag = self._read_lock()
                if owner and owner.get("token") == self._token:
                    self._remove_lock(etag or self._etag)
            self._token = self._etag = None

    def release(self) -> None:
        pass

    def abandon(self) -> None:
        """Let go as a killed writer does - except for the lock: a dead process's lease would
        stay until it expired; a simulated death releases it, as a process that stays alive
        cannot be proven dead."""
        self.unlock()

    def lock_owner(self) -> dict | None:
        return self._read_lock()[0]

    def break_lock(self, force: bool = False) -> dict | None:
        """Remove another writer's lock (``scar ckpt unlock``): only if its holder is
        provably gone or its lease has expired, and its holder does not run on this machine,
        unless ``force``. Returns the record removed, or None if there was no lock."""
        owner, etag = self._read_lock()
        if owner is None and etag is None:
            return None
        if not force:
            if lease.alive_here(owner):
                raise StoreError(
                    f"{self.url} is locked by a running writer ({lease.describe(owner)}): stop "
                    "that process; its lock is removed when it closes the store"
                )
            if lease.why_breakable(owner) is None:
                raise StoreError(
                    f"{self.url} is locked by {lease.describe(owner)}: its lease is fresh, so "
                    "its writer may be alive. Wait until the lease expires, or use --force if "
                    "you know that writer is dead (a live one would lose the version it is "
                    "writing)"
                )
        if not self._remove_lock(etag):
            raise StoreError(f"{self.url}: the lock changed while it was being removed; try again")
        return owner or {}


def _changed(e: OSError) -> bool:
    """Whether a read failed because the object changed while it was read (s3fs reads with
    the ETag its HEAD saw: FileExpired, or S3's refusal of the condition)."""
    return type(e).__name__ == "FileExpired" or _precondition(e)


def _precondition(e: OSError) -> bool:
    """Whether an error is S3's refusal of a conditional request (the object changed)."""
    return "pre-condition" in str(e) or "PreconditionFailed" in str(e)
