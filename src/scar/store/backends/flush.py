"""Flushing files to disk: starting a file's write-back early, and fsync by path."""

from __future__ import annotations

import os
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2


def _writeback_function():
    """Linux's ``sync_file_range``: start writing a file's dirty pages to disk now, without
    waiting and without flushing metadata (None elsewhere: the fsync alone then does it all)."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


start_writeback = _writeback_function()


def fsync_path(path: str, flush: Callable[[int], None] | None = None) -> None:
    """Open ``path``, flush it (``os.fsync``, or ``flush``), close it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (flush or os.fsync)(fd)
    finally:
        os.close(fd)
