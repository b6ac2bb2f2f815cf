"""What a durable store holds: its manifests, the version reads resolve through, and where
each row's latest intact value lives.

The :class:`Catalog` of a store reads every manifest (``load``); the newest intact one is the
*view* (a read-only store may ``checkout`` another). An unreadable manifest is skipped and
named in ``problems``, as is every bad or missing data file found since. The *live set*
(``index``) says, for every row of the view, which segment holds its latest intact value: the
view's own segments, or - once a segment is known bad - the newest intact older copy of each of
its rows in any retained version (``candidates``).

A reader of a store that a writer is changing may find a manifest gone, or read one while it is
retired: only a manifest still listed afterwards counts as unreadable, and a failure on a file
of a version whose manifest is gone (``retired``) is not corruption.
"""

from __future__ import annotations

import warnings
from collections import Counter

from ..errors import CorruptCheckpointError, StoreError
from .codec import decode_index
from .format import (
    Manifest,
    Segment,
    Table,
    corrupt,
    manifest_name,
    manifest_version,
)
from .index import LiveSet
from .manifests import decode_manifest
from .names import DATA_DIR, MANIFEST_DIR, data_version

RETRIES = 50  # reads of a live store started again on a newer version before giving up


class CheckpointWarning(UserWarning):
    """A checkpoint file is corrupt or missing; an older intact copy is read instead."""


class MissingFile(CorruptCheckpointError):
    """A file a manifest lists is not there (deleted, or retired by a writer meanwhile)."""


class VersionRetired(StoreError):
    """The version being read was retired by a running writer (``keep_last``) midway."""


def read_bytes(backend, path: str, start: int, length: int) -> bytes:
    """Bytes of a data file; a missing or unreadable one is a CorruptCheckpointError naming it."""
    try:
        return backend.read(path, start, length) if length else b""
    except FileNotFoundError:
        raise corrupt(path, f"{path}: file is missing", MissingFile) from None
    except OSError as e:
        raise corrupt(path, f"{path}: cannot read ({e})") from None


class Catalog:
    """The manifests of one store and the version reads resolve through (module docstring)."""

    def __init__(self, backend, url: str, readonly: bool) -> None:
        self.backend, self.url, self.readonly = backend, url, readonly
        self.manifests: dict[int, Manifest | None] = {}  # None: unreadable
        self.problems: dict[str, str] = {}  # bad files found so far: path -> why
        self.view: Manifest | None = None  # the manifest reads resolve through
        self.tables: tuple[Table, ...] | None = None
        self.live: LiveSet | None = None  # of the view (built on demand: ``index``)
        self.refs: Counter = Counter()  # path -> retained manifests that list it
        self.next_version = 0
        self.found = 0  # bad files found so far (``problems`` grew)
        self.pinned = False  # a version chosen with checkout (read-only)
        self.served = False  # a read was served from the view (read-only: it stays)

    # -- the manifests ----------------------------------------------------------------------------
    def load(self) -> None:
        """Read every manifest and choose the view (the newest intact one)."""
        for _ in range(RETRIES):
            names = [n for n in self.backend.list(MANIFEST_DIR) if manifest_version(n) is not None]
            manifests, bad, gone = {}, {}, False
            for name in names:
                path = f"{MANIFEST_DIR}/{name}"
                v = manifest_version(name)
                try:
                    manifests[v] = decode_manifest(self.backend.read(path), path)
                except FileNotFoundError:
                    gone = True  # retired by a writer meanwhile
                except OSError as e:
                    raise StoreError(f"cannot read {self.url}/{path}: {e}") from None
                except CorruptCheckpointError as e:
                    bad[path] = str(e)
                    manifests[v] = None
            if bad and self.readonly:  # read while a writer retired it?
                now = set(self.backend.list(MANIFEST_DIR))
                for path in [p for p in bad if p.rsplit("/", 1)[-1] not in now]:
                    del bad[path]
                    del manifests[manifest_version(path.rsplit("/", 1)[-1])]
                    gone = True
            if gone and not any(m is not None for m in manifests.values()):
                continue  # every manifest seen was retired: list again
            break
        self.problems = {p: w for p, w in self.problems.items() if not p.startswith(MANIFEST_DIR)}
        self.problems.update(bad)
        self.manifests = manifests
        self.next_version = max(self.next_version, max(self.manifests, default=-1) + 1)
        self.refs = Counter(p for m in self.intact() for p in m.paths())
        self.served = False
        self._choose_view()

    def intact(self) -> list[Manifest]:
        """Readable manifests, oldest first."""
        return [m for _, m in sorted(self.manifests.items()) if m is not None]

    def _choose_view(self) -> None:
        intact = self.intact()
        self.view, self.live = (intact[-1] if intact else None), None
        if self.view is None:
            return
        self.tables = self.view.tables
        newest = max(self.manifests)
        if newest != self.view.version:
            bad = [why for p, why in self.problems.items() if p.startswith(MANIFEST_DIR)]
            warnings.warn(
                f"{self.url}: {'; '.join(bad)}: reading checkpoint version {self.view.version} "
                f"(iteration {self.view.iteration}) instead of version {newest}",
                CheckpointWarning,
                stacklevel=4,
            )

    def require_view(self) -> Manifest:
        if self.view is None:
            if self.problems:
                raise CorruptCheckpointError(
                    f"no intact checkpoint in {self.url}: " + "; ".join(self.problems.values())
                )
            raise StoreError(f"no committed checkpoint in {self.url}")
        return self.view

    def checkout(self, version: int) -> Manifest:
        """Read through ``version`` from now on (read-only stores)."""
        if not self.readonly:
            raise StoreError("checkout is for read-only stores")
        m = self.manifests.get(version)
        if m is None:
            why = self.problems.get(f"{MANIFEST_DIR}/{manifest_name(version)}", "no such version")
            raise StoreError(f"cannot read version {version} of {self.url}: {why}")
        self.view, self.live, self.tables = m, None, m.tables
        self.pinned, self.served = True, False
        return m

    def commit(self, m: Manifest) -> None:
        """Take in a version this store's writer has just committed: the view from now on."""
        self.manifests[m.version] = m
        self.view = m
        self.refs.update(m.paths())

    def unreadable_upto(self) -> int:
        """The newest version whose manifest cannot be read (-1: none)."""
        return max((v for v, m in self.manifests.items() if m is None), default=-1)

    def deletable(self, path: str) -> bool:
        """Whether data file ``path``, listed by no retained intact manifest, may be deleted:
        it is one of the store's and no unreadable manifest could list it."""
        v = data_version(path)
        return v is not None and v > self.unreadable_upto()

    def inherited(self) -> dict:
        """path -> (segment, its table) or (aux, None): every file the retained manifests
        list (what a writer that opens the store did not write)."""
        out: dict = {}
        for m in self.intact():
            for seg in m.segments:
                out.setdefault(seg.path, (seg, m.tables[seg.table]))
            if m.aux is not None and m.aux.path:
                out.setdefault(m.aux.path, (m.aux, None))
        return out

    # -- bad files ----------------------------------------------------------------------------------
    def bad_file(self, e: CorruptCheckpointError) -> bool:
        """Record the bad file ``e`` names; False if it names none, or one known already."""
        path = getattr(e, "path", None)
        if path is None or path in self.problems:
            return False
        self.problems[path] = str(e)
        self.found += 1
        return True

    def retired(self, view: Manifest) -> bool:
        """Whether a writer has retired ``view`` since it was read (its manifest is gone)."""
        try:
            return manifest_name(view.version) not in self.backend.list(MANIFEST_DIR)
        except StoreError:
            return False

    def gone(self, view: Manifest) -> VersionRetired:
        return VersionRetired(
            f"version {view.version} (iteration {view.iteration}) of {self.url} was retired by "
            "a running writer while it was being read: read again"
            + (" (choose a version it still keeps: `scar ckpt ls`)" if self.pinned else "")
        )

    # -- the live set -------------------------------------------------------------------------------
    def candidates(self, view: Manifest) -> list[Segment]:
        """The segments to resolve rows through, in the order they override each other: the
        view's own list, or - once a segment is known bad - every segment of every retained
        version up to the view with the same tables (a writer never changes them: one that
        differs was not written by it), so that older copies can stand in for the bad one's
        rows."""
        if not any(p.startswith(DATA_DIR) for p in self.problems):
            return list(view.segments)
        found: dict[str, Segment] = {}
        for m in self.intact():
            if m.version <= view.version and m.tables == view.tables:
                for seg in m.segments:
                    found.setdefault(seg.path, seg)
        return sorted(found.values(), key=lambda s: (s.version, s.table, s.chunk))

    def index(self) -> LiveSet:
        """The live set of the view: which segment holds each row's latest intact value."""
        if self.live is None:
            view = self.require_view()
            live = LiveSet(view.tables)
            for seg in self.candidates(view):
                table = view.tables[seg.table]
                if seg.path in self.problems:
                    try:
                        ids = None if seg.dense else self.ids(seg, table)[0]
                    except CorruptCheckpointError:
                        ids = None  # rows unknown: count it as holding its whole chunk
                    live.apply_bad(seg, ids)
                    continue
                ids, iters = self.ids(seg, table)
                live.apply([(seg, None if seg.dense else ids, iters)])
            self.live = live
        return self.live

    def ids(self, seg: Segment, table: Table) -> tuple:
        """(row ids, per-row iterations) of a segment, from its index section (checked)."""
        if seg.dense and not seg.row_iters:
            return None, None
        return decode_index(read_bytes(self.backend, seg.path, 0, seg.index_bytes), seg, table)
