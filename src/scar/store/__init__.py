"""Checkpoint stores.

``MemoryStore`` keeps everything in this process; ``DurableStore`` (``open_store(url)``) writes
versions of row segments to a local directory, ``memory://`` or ``s3://`` through fsspec, with
checksums, atomic commits, async writes and compression. Both keep the contract of ``base.py``.
"""

from .base import CheckpointStore, SaveResult, TableSpec, VersionInfo, specs_of
from .memory import MemoryStore
from .store import CheckpointWarning, DurableStore, Snapshot, VersionRetired, open_store

__all__ = [
    "CheckpointStore",
    "CheckpointWarning",
    "DurableStore",
    "MemoryStore",
    "SaveResult",
    "Snapshot",
    "TableSpec",
    "VersionInfo",
    "VersionRetired",
    "open_store",
    "specs_of",
]
