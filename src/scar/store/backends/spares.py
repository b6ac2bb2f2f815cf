"""Retired files a local store keeps to write new files over (see ``LocalBackend.recycle``)."""

from __future__ import annotations

import threading

SPARE_BYTES = 4 << 20  # retired files up to this size are kept as spares to write over
MAX_SPARES = 16  # spares kept at most (further retired files are deleted)
BLOCK = 4096  # spares are matched to new files by their size in blocks of this many bytes


class Spares:
    """Retired files kept to be written over, by size in blocks. A file retired at version
    ``v`` (its manifest retired, or no retained manifest listing it) may be written over
    only once a later commit has flushed the folder that renamed it: before that, a crash of
    the machine could bring back its old name, and even its old manifest, with another
    file's bytes in it. So a retired spare waits (``retired``) until a commit flushes its
    folder (``committed``), and is taken (``take``) from then on. Thread-safe: a large batch
    writes its files on two threads."""

    def __init__(self) -> None:
        self._ready: dict[int, list[tuple[str, int]]] = {}  # blocks -> [(name, bytes)]
        self._waiting: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def keeps(self, size: int) -> bool:
        """Whether a retired file of ``size`` bytes is kept as a spare (small, and room left)."""
        return 0 < size <= SPARE_BYTES and self.room()

    def room(self) -> bool:
        return len(self._waiting) + sum(map(len, self._ready.values())) < MAX_SPARES

    def retired(self, name: str, size: int) -> None:
        with self._lock:
            self._waiting.append((name, size))

    def committed(self, flushed: set[str] | None) -> None:
        """A commit has flushed the folders ``flushed``: the spares waiting in them are ready
        (every one with None: nothing is flushed, and a crash of the machine is not covered)."""
        with self._lock:
            still = []
            for name, size in self._waiting:
                if flushed is None or name.rsplit("/", 1)[0] in flushed:
                    self._ready.setdefault(_blocks(size), []).append((name, size))
                else:
                    still.append((name, size))
            self._waiting = still

    def take(self, size: int) -> tuple[str, int] | None:
        """A spare of as many blocks as ``size`` bytes: (its name, its size), or None."""
        if not self._ready:
            return None
        with self._lock:
            found = self._ready.get(_blocks(size))
            if not found:
                return None
            spare = found.pop()
            if not found:
                del self._ready[_blocks(size)]
            return spare

    def drop(self) -> list[str]:
        """Forget every spare; their names (to delete)."""
        with self._lock:
            names = [n for v in self._ready.values() for n, _ in v] + [n for n, _ in self._waiting]
            self._ready, self._waiting = {}, []
            return names


def _blocks(size: int) -> int:
    return -(-size // BLOCK)
