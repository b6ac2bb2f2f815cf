"""The writer lock of a local store: an ``flock`` on its ``LOCK`` file.

The kernel releases an flock when its process exits or is killed, so a dead writer's lock is
never in the way and there is nothing stale to remove. ``LOCK`` is created exclusively or an
existing one reopened, never through a symbolic link (the caller opens it with ``O_NOFOLLOW``),
and a file with other hard links is refused: the writer truncates and writes its record
(lease.identity: host, pid, boot, namespace, start time) into it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable

from ...errors import StoreError
from . import lease
from .base import why


class FileLock:
    """The flock of one store's ``LOCK`` (``open_lock(flags)`` opens that file)."""

    def __init__(self, path: str, store: str, open_lock: Callable[[int], int]) -> None:
        self.path, self.store, self._open = path, store, open_lock
        self.fd: int | None = None

    def take(self) -> None:
        """Take the lock, or raise StoreError naming the writer that holds it."""
        try:
            try:
                fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                fd = self._open(os.O_RDWR)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreError(
                    f"{self.path} is a symbolic link: refusing to use it as the writer lock (a "
                    "store's LOCK is a plain file of its own; remove the link)"
                ) from None
            raise StoreError(f"cannot lock {self.path}: {why(e)}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise StoreError(
                    f"{self.path} is not a plain file of this store (a special file, or one with "
                    "other hard links): refusing to use it as the writer lock"
                )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise StoreError(f"cannot lock {self.path}: {why(e)}") from None
            raise StoreError(
                f"checkpoint store {self.store} is in use by {lease.describe(self._record())}: "
                "one writer at a time"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**lease.identity(), "since": time.time()}).encode())
        self.fd = fd

    def release(self, clear: bool = True) -> None:
        """Let the lock go (``clear``: empty the record first, as a clean close does)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            if clear:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            os.close(fd)  # closing releases the flock

    def _record(self) -> dict | None:
        try:
            fd = self._open(os.O_RDONLY)
        except OSError:
            return None
        try:
            with open(fd, "rb", closefd=False) as f:
                owner = json.loads(f.read() or b"null")
        except (OSError, ValueError, RecursionError):
            return None
        finally:
            os.close(fd)
        return owner if isinstance(owner, dict) else None

    def holder(self) -> dict | None:
        """The record of the writer holding the lock now ({} if it wrote none), or None."""
        try:
            fd = self._open(os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except OSError:
            return self._record() or {}
        finally:
            os.close(fd)
