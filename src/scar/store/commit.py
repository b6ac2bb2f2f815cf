"""Writing a durable store: one version's segments, its commit, compaction and retention.

The :class:`Committer` of a writer's store. The order of a version's writes is what makes a
kill at any instant harmless:

1. its segments (and aux file) go to new files ``data/v<version>.*`` and are made durable
   (with the temporary manifest, in one flush: ``backend.publish``);
2. its manifest is committed atomically — before this step the version does not exist;
3. manifests beyond ``keep_last`` are deleted, then the files that no retained manifest lists
   (a local disk keeps small ones as spares to write later versions over: ``recycle``).

A crash between 1 and 2 leaves files no manifest lists; between 2 and 3, files of retired
versions. A writer opening the store deletes both (``_clean``), under the writer lock.

What a writer deletes, it can show no restore needs (``_deletable``):

* only files whose names a writer makes (names.py; the backends refuse any other);
* never a manifest it cannot read, nor a data file such a manifest could list (one of a
  version up to that manifest's): a flipped byte in the newest manifest costs the space of
  what it lists, not the data. ``scar ckpt verify`` names the manifest; removing it lets the
  next writer reclaim the space;
* never the last intact copy of a row: before it retires files whose rows newer segments
  hold, it checks those newer segments (once each; the ones it wrote itself are trusted).
  When one is bad, it retires nothing until a version that resolves the bad segment's rows
  to their older intact copies is committed (those copies are then listed, so kept) —
  the store keeps the fallback copies rather than rewriting them.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..errors import CorruptCheckpointError, StoreError
from .backends import Deferred
from .catalog import Catalog, CheckpointWarning, read_bytes
from .codec import build_aux, build_segment, decode_aux, decode_index, decode_values
from .format import Manifest, data_prefix, encode_manifest, manifest_name
from .names import DATA_DIR, MANIFEST_DIR, is_spare, is_temporary
from .reading import Reader


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


class Committer:
    """Writes a store's versions and retires old ones (see the module docstring); one per
    writer, used by one thread at a time (the saving one, or the async writer's)."""

    def __init__(
        self,
        catalog: Catalog,
        reader: Reader,
        compression: str,
        keep_last: int | None,
        compact_after: int,
    ) -> None:
        self.catalog, self.reader, self.backend = catalog, reader, catalog.backend
        self.compression, self.keep_last, self.compact_after = compression, keep_last, compact_after
        self.unchecked: dict = {}  # inherited files not checked whole yet (_supersessors_intact)
        self.abandoned = False  # stopped as if killed: nothing more is committed

    def checked(self, path: str) -> None:
        """A read checked ``path``'s values whole (its index was checked when it was listed)."""
        self.unchecked.pop(path, None)

    def write(self, job: Job) -> None:
        """Write and commit one version (then retire what it supersedes)."""
        cat = self.catalog
        live = cat.index() if cat.view is not None else cat.live
        found = cat.found  # bad files found so far
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
            table = cat.tables[t]
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
        aux = cat.view.aux if cat.view is not None else None
        if job.aux is not None:
            path = f"{d}.aux" if job.aux else ""  # no arrays: nothing to write
            aux, bufs = build_aux(path, job.version, job.iteration, job.aux, self.compression)
            if path:
                files.append((aux.path, bufs))
        updates, lost = [], Counter()

        def manifest() -> bytes:  # once every file is written
            if self.abandoned:  # killed (abandon) before its commit: never committed
                raise StoreError(f"checkpoint store {cat.url} was abandoned")
            updates.extend((built[p], cids, iters) for p, cids, iters in pieces)
            lost.update(live.losses(updates))
            written = sum(s.nbytes for s, _, _ in updates)
            written += aux.nbytes if job.aux is not None else 0
            m = Manifest(
                job.version, job.iteration, job.complete, job.rows, job.value_bytes, written,
                time.time(), cat.tables, tuple(live.preview(updates, lost)), aux,
            )  # fmt: skip
            built[None] = m
            return encode_manifest(m)

        self.backend.publish(files, f"{MANIFEST_DIR}/{manifest_name(job.version)}", manifest)
        cat.commit(built[None])
        if cat.found != found:
            # a merge found a bad file: the next version resolves its rows to older intact
            # copies (the live set is built again), and nothing is retired before it is
            cat.live = None
            return
        live.apply(updates, lost)
        cat.live = live
        self._retire()

    def _merge(self, t: int, c: int, ids: np.ndarray, values: np.ndarray, iteration: int):
        """Compaction of chunk ``c``: one segment with the new rows over the saved rows of the
        chunk's live segments, with per-row iterations, replacing those segments. The oldest
        live segment is left as it is while it still holds at least half of the chunk's
        rows (a full save, or an earlier merge, whose rows have not changed since) and at
        least two others are merged: a merge then rewrites the rows saved since, not the
        whole chunk. None if a live segment cannot be read (the new rows are then written on
        their own)."""
        live, table = self.catalog.live, self.catalog.tables[t]
        lo, hi = table.chunks[c], table.chunks[c + 1]
        merged = np.zeros((hi - lo, table.width), table.dtype)
        try:
            if live.bad:  # some rows resolve to older copies: every row, one by one
                keep = live.owner[t][lo:hi] >= 0
                old = np.flatnonzero(keep)
                merged[old] = self.reader.gather(t, old + lo)
                iters = live.iterations(t, slice(lo, hi))
            else:  # each merged segment's values section, read once; rows placed by the live set
                segs = live.chunk_segments(t, c)
                # (with 2 segments, leaving the oldest would leave 2 again: a merge every save)
                if len(segs) > 2 and 2 * live.owned[segs[0][0]] >= hi - lo:
                    segs = segs[1:]
                offsets = np.cumsum([0] + [s.rows for _, s in segs])
                held = np.empty((offsets[-1], table.width), table.dtype)
                for (_, seg), a, z in zip(segs, offsets[:-1], offsets[1:], strict=True):
                    self.reader.values_into(seg, held[a:z])
                iters, keep = live.fill_chunk(t, c, [u for u, _ in segs], offsets, held, merged)
        except CorruptCheckpointError as e:
            self.catalog.bad_file(e)
            warnings.warn(f"compaction skipped: {e}", CheckpointWarning, stacklevel=2)
            return None
        merged[ids - lo] = values
        iters[ids - lo] = iteration
        keep[ids - lo] = True
        if keep.all():
            return None, merged, iters
        return np.flatnonzero(keep) + lo, merged[keep], iters[keep]

    def _retire(self) -> None:
        """Keep the newest ``keep_last`` intact manifests; delete older intact manifests, then
        the files that no retained manifest lists and no unreadable one could
        (``backend.recycle``: a local disk keeps small ones to write over) - once the newer
        segments that hold their rows are known to be intact (``_supersessors_intact``).
        Unreadable manifests are never deleted here."""
        c = self.catalog
        intact = [v for v, m in sorted(c.manifests.items()) if m is not None]
        if self.keep_last is None or len(intact) <= self.keep_last:
            return
        cutoff = intact[-self.keep_last]
        old = [v for v in intact if v < cutoff]
        refs = c.refs.copy()
        for v in old:
            refs.subtract(c.manifests[v].paths())
        dead = sorted({p for v in old for p in c.manifests[v].paths() if refs[p] <= 0})
        if not self._supersessors_intact(old, dead):
            return  # a bad segment was found: its rows' older copies must stay readable
        self.backend.recycle([f"{MANIFEST_DIR}/{manifest_name(v)}" for v in old])
        for v in old:
            del c.manifests[v]
            c.problems.pop(f"{MANIFEST_DIR}/{manifest_name(v)}", None)
        c.refs = +refs  # (drops the paths no manifest lists any more)
        dead = [p for p in dead if c.deletable(p)]
        for p in dead:
            c.problems.pop(p, None)
            self.unchecked.pop(p, None)
        self.backend.recycle(dead)

    def _supersessors_intact(self, old: list[int], dead: list[str]) -> bool:
        """Before files of the retired manifests ``old`` are deleted: check every file this
        writer inherited and has not checked yet (``_unchecked``) that holds rows of theirs
        in a newer version - a segment of the same chunk, or a newer aux file. False, with
        the problem recorded, if one is bad. Free once every inherited file is checked (a
        read checks what it reads) or retired."""
        c = self.catalog
        if not self.unchecked:
            return True
        retiring = {s.path: s for v in old for s in c.manifests[v].segments}
        oldest: dict[tuple[int, int], int] = {}  # (table, chunk) -> oldest version retired
        for p in dead:
            s = retiring.get(p)
            if s is not None:
                key = (s.table, s.chunk)
                oldest[key] = min(oldest.get(key, s.version), s.version)
        aux = [a.version for v in old if (a := c.manifests[v].aux) is not None and a.path in dead]
        first_aux = min(aux, default=None)
        for path, (item, table) in list(self.unchecked.items()):
            if path in dead:
                continue
            if table is None:
                needed = first_aux is not None and item.version > first_aux
            else:
                first = oldest.get((item.table, item.chunk))
                needed = first is not None and item.version > first
            if not needed:
                continue
            try:
                data = read_bytes(self.backend, path, 0, item.nbytes)
                if table is None:
                    decode_aux(data, item)
                else:
                    decode_index(data[: item.index_bytes], item, table)
                    decode_values(data[item.index_bytes :], item, table)
            except CorruptCheckpointError as e:
                c.bad_file(e)
                c.live = None  # the next version resolves its rows to older copies
                warnings.warn(
                    f"{e}: keeping the older copies of what it held",
                    CheckpointWarning,
                    stacklevel=3,
                )
                return False
            del self.unchecked[path]
        return True

    def clean(self) -> None:
        """Delete what a crashed writer left: temporary files, spares, and data files no
        manifest lists (of versions no unreadable manifest could list)."""
        c = self.catalog
        temps = [n for n in self.backend.list(MANIFEST_DIR) if is_temporary(n)]
        self.backend.delete([f"{MANIFEST_DIR}/{n}" for n in temps])
        listed = {p for m in c.intact() for p in m.paths()}
        self.backend.delete(
            [
                p
                for p in self.backend.files(DATA_DIR)
                if is_spare(p) or (p not in listed and c.deletable(p))
            ]
        )
        self._retire()
