"""Machine CPU per small version of seven ways to make it durable on a local file system: the
store's file-per-version commit (as before and as it is now, writing over retired files)
against schemes that reuse space in other ways. A design benchmark: what a log-structured
local backend would save.

    .venv/bin/python benchmarks/commit_schemes.py [--versions 600] [--rounds 2] [--dir .]

Each version is a ``--segment-kb`` segment (160 KB: a 32768-row priority save of one sparse-LR
shard, float32 values and a row bitmap) and a ``--manifest-kb`` manifest (3 KB), written as:

* ``files`` (the baseline, what ``LocalBackend.publish`` does for a small version): the segment
  and a temporary manifest written to new files (each one's write-back started as it is
  written), then fsynced, the data directory fsynced, the manifest renamed into place, its
  directory fsynced; the files of the version ``keep`` (3) back deleted;
* ``files_late``: the same, but no write-back started before the fsyncs (they do it all);
* ``files_each``: the same as ``files``, but each file fsynced as soon as it is written (the
  store's earlier order: on a journaled file system, one more forced commit per version);
* ``recycled``: the segment written over one of ``keep + 1`` data files in place (no new file,
  no delete, no directory flush) and ``fdatasync``-ed; the manifest as in ``files``;
* ``spares`` (what ``LocalBackend`` does now, ``recycle``): as ``files``, but the segment
  and the temporary manifest are retired files renamed to their new names and written over
  in place (``fdatasync``), and retired files are renamed aside, not deleted; a spare is
  used only after the version that retired it (a commit flushed its rename);
* ``hybrid``: the manifest as in ``spares``, the segment written over one of ``keep + 1``
  slot files in place (no rename, no data directory flush): data in place, commit by
  rename, what a preallocated data log with renamed manifests would cost;
* ``log``: segment and manifest written together into a preallocated file in place (slots
  reused round-robin) and ``fdatasync``-ed: one flush of data blocks, no metadata to journal.

Measured per version: wall time, CPU of this process, and CPU of the whole machine from
/proc/stat (the file system's journal thread if it has one, I/O completions and discards of
freed blocks included: work done at normal priority whatever the writer's own priority). The
rounds rotate the order; medians. The last line is one JSON object with each scheme's machine CPU and the
ratio ``files / scheme``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

# the machine's CPU counters as ray_overhead.py reads them (cpu_ticks, Clock)
spec = importlib.util.spec_from_file_location("ray_overhead", os.path.join(HERE, "ray_overhead.py"))
ro = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ro)

from scar.store.backends import flush  # noqa: E402  (its sync_file_range, as the store calls it)

SCHEMES = ("files", "files_late", "files_each", "recycled", "spares", "hybrid", "log")
KEEP = 3  # versions kept, as the store's default keep_last
WARM = 20  # versions written before the timed ones (every slot and data file exists then)


def write_new(path: str, data: bytes, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_open(path: str, data: bytes, early: bool) -> int:
    """A new file with ``data`` (``early``: its write-back started, not waited for); its open
    descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    if early and flush.start_writeback is not None:
        flush.start_writeback(fd, 0, len(data), flush.SYNC_FILE_RANGE_WRITE)
    return fd


def overwrite(path: str, data: bytes, at: int = 0) -> None:
    """Write ``data`` over a file's existing bytes at ``at`` and flush them (fdatasync: no
    metadata to commit while the file does not grow)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, at)
        os.fdatasync(fd)
    finally:
        os.close(fd)


class Scheme:
    def __init__(self, name: str, root: str, segment: bytes, manifest: bytes) -> None:
        self.name, self.segment, self.manifest = name, segment, manifest
        self.data, self.mans = os.path.join(root, "data"), os.path.join(root, "manifests")
        os.makedirs(self.data)
        os.makedirs(self.mans)
        self.data_fd = os.open(self.data, os.O_RDONLY)
        self.mans_fd = os.open(self.mans, os.O_RDONLY)
        self.slot = len(segment) + len(manifest)
        self.spares: dict[str, list[str]] = {self.data: [], self.mans: []}  # oldest first
        if name == "log":  # preallocated once, with its size flushed
            fd = os.open(os.path.join(self.data, "log"), os.O_WRONLY | os.O_CREAT, 0o644)
            os.posix_fallocate(fd, 0, self.slot * (KEEP + 1))
            os.fsync(fd)
            os.close(fd)
            os.fsync(self.data_fd)

    def close(self) -> None:
        os.close(self.data_fd)
        os.close(self.mans_fd)

    def _commit_manifest(self, v: int) -> None:
        tmp = os.path.join(self.mans, f".v{v}.tmp")
        write_new(tmp, self.manifest, sync=True)
        os.replace(tmp, os.path.join(self.mans, f"v{v}.json"))
        os.fsync(self.mans_fd)

    def _take(self, folder: str, name: str) -> None:
        """Rename the oldest spare of ``folder``, if one was retired before the last version,
        to ``name`` (the one retired by the last version waits, as in the store)."""
        if len(self.spares[folder]) > 1:
            os.rename(os.path.join(folder, self.spares[folder].pop(0)), os.path.join(folder, name))

    def _retire(self, folder: str, name: str, v: int) -> None:
        os.rename(os.path.join(folder, name), os.path.join(folder, f".spare-{v}"))
        self.spares[folder].append(f".spare-{v}")

    def version(self, v: int) -> None:
        if self.name in ("files", "files_late"):
            early = self.name == "files"
            tmp = os.path.join(self.mans, f".v{v}.tmp")
            fds = [write_open(os.path.join(self.data, f"v{v}.seg"), self.segment, early)]
            fds.append(write_open(tmp, self.manifest, early))
            for fd in fds:
                os.fsync(fd)
                os.close(fd)
            os.fsync(self.data_fd)
            os.replace(tmp, os.path.join(self.mans, f"v{v}.json"))
            os.fsync(self.mans_fd)
            if v >= KEEP:
                os.unlink(os.path.join(self.data, f"v{v - KEEP}.seg"))
                os.unlink(os.path.join(self.mans, f"v{v - KEEP}.json"))
        elif self.name == "files_each":
            write_new(os.path.join(self.data, f"v{v}.seg"), self.segment, sync=True)
            os.fsync(self.data_fd)  # (after the temp manifest in the store: the same flushes)
            self._commit_manifest(v)
            if v >= KEEP:
                os.unlink(os.path.join(self.data, f"v{v - KEEP}.seg"))
                os.unlink(os.path.join(self.mans, f"v{v - KEEP}.json"))
        elif self.name == "recycled":
            overwrite(os.path.join(self.data, f"slot{v % (KEEP + 1)}.seg"), self.segment)
            self._commit_manifest(v)
            if v >= KEEP:
                os.unlink(os.path.join(self.mans, f"v{v - KEEP}.json"))
        elif self.name in ("spares", "hybrid"):
            tmp = f".v{v}.tmp"
            if self.name == "spares":
                seg = f"v{v}.seg"
                self._take(self.data, seg)
            else:
                seg = f"slot{v % (KEEP + 1)}.seg"
            self._take(self.mans, tmp)
            overwrite(os.path.join(self.data, seg), self.segment)
            overwrite(os.path.join(self.mans, tmp), self.manifest)
            if self.name == "spares":
                os.fsync(self.data_fd)  # the segment's new name
            os.replace(os.path.join(self.mans, tmp), os.path.join(self.mans, f"v{v}.json"))
            os.fsync(self.mans_fd)
            if v >= KEEP:
                self._retire(self.mans, f"v{v - KEEP}.json", v)
                if self.name == "spares":
                    self._retire(self.data, f"v{v - KEEP}.seg", v)
        else:
            at = (v % (KEEP + 1)) * self.slot
            overwrite(os.path.join(self.data, "log"), self.segment + self.manifest, at)


def run(name: str, root: str, a, segment: bytes, manifest: bytes) -> dict[str, float]:
    s = Scheme(name, root, segment, manifest)
    try:
        for v in range(WARM):
            s.version(v)
        clock = ro.Clock()
        clock.start()
        for v in range(WARM, WARM + a.versions):
            s.version(v)
        per = clock.per(a.versions)
    finally:
        s.close()
    return {k: 1e3 * x for k, x in per.items()}  # ms per version


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--segment-kb", type=int, default=160)
    ap.add_argument("--manifest-kb", type=int, default=3)
    ap.add_argument("--dir", default=".")
    a = ap.parse_args()
    if a.versions < 1 or a.rounds < 1 or a.segment_kb < 1 or a.manifest_kb < 1:
        ap.error("--versions, --rounds, --segment-kb and --manifest-kb must be >= 1")
    if ro.cpu_ticks() is None:
        ap.error("needs Linux's /proc/stat for the machine's CPU time")
    segment, manifest = os.urandom(a.segment_kb << 10), os.urandom(a.manifest_kb << 10)
    res: dict[str, list[dict]] = {n: [] for n in SCHEMES}
    for r in range(a.rounds):
        for name in SCHEMES[r % len(SCHEMES) :] + SCHEMES[: r % len(SCHEMES)]:
            root = tempfile.mkdtemp(prefix="scar-commit-", dir=a.dir)
            try:
                res[name].append(run(name, root, a, segment, manifest))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        print({n: {k: round(v, 3) for k, v in rs[-1].items()} for n, rs in res.items()}, flush=True)
    med = {
        n: {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0]}
        for n, rs in res.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "commit_schemes",
                "segment_kb": a.segment_kb,
                "manifest_kb": a.manifest_kb,
                "versions": a.versions,
                "ms_per_version": med,
                # None: too few versions for /proc/stat's 10 ms ticks to see the scheme's CPU
                "files_over": {
                    n: round(med["files"]["machine"] / med[n]["machine"], 2)
                    if med[n]["machine"] > 0
                    else None
                    for n in SCHEMES[1:]
                },
            }
        )
    )


if __name__ == "__main__":
    main()
