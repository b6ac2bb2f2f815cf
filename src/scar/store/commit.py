"""Writing a durable store: one version's segments, its commit, compaction and retention.

A mixin of :class:`~scar.store.store.DurableStore`. The order of a version's writes is what
makes a kill at any instant harmless:

1. its segments (and aux file) go to new files ``data/v<version>.*`` and are made durable
   (with the temporary manifest, in one flush: ``backend.publish``);
2. its manifest is committed atomically — before this step the version does not exist;
3. manifests beyond ``keep_last`` are deleted, then the files that no retained manifest lists
   (a local disk keeps small ones as spares to write later versions over: ``recycle``).

A crash between 1 and 2 leaves files no manifest lists; between 2 and 3, files of retired
versions. A writer opening the store deletes both (``_clean``), under the writer lock.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..errors import CorruptCheckpointError
from .backends import Deferred
from .codec import build_aux, build_segment
from .format import DATA_DIR, MANIFEST_DIR, Manifest, data_prefix, encode_manifest, manifest_name
from .reading import CheckpointWarning


@dataclass
class Job:
    """One version to write: what ``save()`` was given (copied in async mode)."""

    version: int
    iteration: int
    tables: list  # (table index, sorted unique row ids or None for all rows, values)
    aux: dict | None
    complete: bool
    rows: int = 0
    value_bytes: int = 0
    buffers: list = field(default_factory=list)  # snapshot buffers to recycle


class Committing:
    def _write(self, job: Job) -> None:
        live = self._index() if self._view is not None else self._live
        d = data_prefix(job.version)
        files, pieces, built = [], [], {}

        def deferred(path: str, nbytes: int, build) -> Deferred:
            """The file's bytes and manifest entry are built (checksum, compression) when the
            backend writes it, so one file is checksummed while another is written."""

            def run() -> list:
                built[path], bufs = build()
                return bufs

            return Deferred(nbytes, run)

        for t, ids, values in job.tables:
            table = self._tables[t]
            for c, lo, hi in table.by_chunk(ids):
                cids = None if ids is None or hi - lo == table.chunk_rows(c) else ids[lo:hi]
                cvals, iters = values[lo:hi], None
                if cids is not None and live.live_segments(t, c) + 1 > self.compact_after:
                    merged = self._merge(t, c, cids, cvals, job.iteration)
                    if merged is not None:
                        cids, cvals, iters = merged
                path = f"{d}.t{t}.c{c:04d}.seg"
                build = partial(
                    build_segment, path, t, c, table, job.version, job.iteration,
                    cids, iters, cvals, self.compression,
                )  # fmt: skip
                files.append((path, deferred(path, cvals.nbytes, build)))
                pieces.append((path, cids, iters))
        aux = self._view.aux if self._view is not None else None
        if job.aux is not None:
            path = f"{d}.aux" if job.aux else ""  # no arrays: nothing to write
            aux, bufs = build_aux(path, job.version, job.iteration, job.aux, self.compression)
            if path:
                files.append((aux.path, bufs))
        updates, lost = [], Counter()

        def manifest() -> bytes:  # once every file is written
            updates.extend((built[p], cids, iters) for p, cids, iters in pieces)
            lost.update(live.losses(updates))
            written = sum(s.nbytes for s, _, _ in updates)
            written += aux.nbytes if job.aux is not None else 0
            m = Manifest(
                job.version, job.iteration, job.complete, job.rows, job.value_bytes, written,
                time.time(), self._tables, tuple(live.preview(updates, lost)), aux,
            )  # fmt: skip
            built[None] = m
            return encode_manifest(m)

        self.backend.publish(files, f"{MANIFEST_DIR}/{manifest_name(job.version)}", manifest)
        m = built[None]
        live.apply(updates, lost)
        self._live = live
        self._manifests[job.version] = m
        self._view = m
        self._refs.update(m.paths())
        self._retire()

    def _merge(self, t: int, c: int, ids: np.ndarray, values: np.ndarray, iteration: int):
        """Compaction of chunk ``c``: one segment with the new rows over the saved rows of the
        chunk's live segments, with per-row iterations, replacing those segments. The oldest
        live segment is left as it is while it still holds at least half of the chunk's
        rows (a full save, or an earlier merge, whose rows have not changed since) and at
        least two others are merged: a merge then rewrites the rows saved since, not the
        whole chunk. None if a live segment cannot be read (the new rows are then written on
        their own)."""
        live, table = self._live, self._tables[t]
        lo, hi = table.chunks[c], table.chunks[c + 1]
        merged = np.zeros((hi - lo, table.width), table.dtype)
        try:
            if live.bad:  # some rows resolve to older copies: every row, one by one
                keep = live.owner[t][lo:hi] >= 0
                old = np.flatnonzero(keep)
                merged[old] = self._gather(t, old + lo)
                iters = live.iterations(t, slice(lo, hi))
            else:  # each merged segment's values section, read once; rows placed by the live set
                segs = live.chunk_segments(t, c)
                # (with 2 segments, leaving the oldest would leave 2 again: a merge every save)
                if len(segs) > 2 and 2 * live.owned[segs[0][0]] >= hi - lo:
                    segs = segs[1:]
                offsets = np.cumsum([0] + [s.rows for _, s in segs])
                held = np.empty((offsets[-1], table.width), table.dtype)
                for (_, seg), a, z in zip(segs, offsets[:-1], offsets[1:], strict=True):
                    self._values_into(seg, held[a:z])
                iters, keep = live.fill_chunk(t, c, [u for u, _ in segs], offsets, held, merged)
        except CorruptCheckpointError as e:
            warnings.warn(f"compaction skipped: {e}", CheckpointWarning, stacklevel=2)
            return None
        merged[ids - lo] = values
        iters[ids - lo] = iteration
        keep[ids - lo] = True
        if keep.all():
            return None, merged, iters
        return np.flatnonzero(keep) + lo, merged[keep], iters[keep]

    def _retire(self) -> None:
        """Keep the newest ``keep_last`` intact manifests; delete older manifests, then the
        files that no retained manifest lists (``backend.recycle``: a local disk keeps small
        ones to write over)."""
        intact = [v for v, m in sorted(self._manifests.items()) if m is not None]
        if self.keep_last is None or len(intact) <= self.keep_last:
            return
        cutoff = intact[-self.keep_last]
        old = [v for v in self._manifests if v < cutoff]
        self.backend.recycle([f"{MANIFEST_DIR}/{manifest_name(v)}" for v in old])
        dead = []
        for v in old:
            m = self._manifests.pop(v)
            self.problems.pop(f"{MANIFEST_DIR}/{manifest_name(v)}", None)
            if m is not None:
                self._refs.subtract(m.paths())
                dead += [p for p in m.paths() if self._refs[p] <= 0]
        for p in dead:
            self._refs.pop(p, None)
            self.problems.pop(p, None)
        self.backend.recycle(sorted(set(dead)))

    def _clean(self) -> None:
        """Delete what a crashed writer left: temporary files and files no manifest lists."""
        temps = [n for n in self.backend.list(MANIFEST_DIR) if self.backend.is_temporary(n)]
        self.backend.delete([f"{MANIFEST_DIR}/{n}" for n in temps])
        listed = {p for m in self.intact() for p in m.paths()}
        self.backend.delete([p for p in self.backend.walk(DATA_DIR) if p not in listed])
        self._retire()
