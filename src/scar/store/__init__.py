"""Checkpoint stores. ``MemoryStore`` is in-process; durable stores implement the same interface."""

from .base import CheckpointStore, SaveResult, TableSpec, VersionInfo, specs_of
from .memory import MemoryStore

__all__ = ["CheckpointStore", "MemoryStore", "SaveResult", "TableSpec", "VersionInfo", "specs_of"]
