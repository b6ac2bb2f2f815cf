"""Where a store's files live: a local directory (``local.py``), or any fsspec file system
(``fsspec.py``: ``memory://``, ``s3://``), behind one contract (``base.py``); spare files a local
store writes over (``spares.py``); the lease that locks an object store (``lease.py``)."""

from __future__ import annotations

from ..urls import check_url
from .base import Backend, Deferred
from .flush import fsync_path
from .fsspec import FsspecBackend
from .local import LocalBackend

__all__ = ["Backend", "Deferred", "FsspecBackend", "LocalBackend", "backend_for", "fsync_path"]


def backend_for(url: str, storage_options: dict | None = None, fsync: bool = True) -> Backend:
    """The backend of a store URL: a plain path or ``file://`` is local, anything else fsspec."""
    check_url(url)
    if url.startswith("file://"):
        return LocalBackend(url[len("file://") :], fsync)
    if "://" not in url:
        return LocalBackend(url, fsync)
    return FsspecBackend(url, storage_options)
