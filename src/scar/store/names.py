"""The names a store writer gives its files, and so the only names it ever deletes.

    LOCK                                   the writer lock
    .probe-<32 hex>                        a writability probe (made and removed at once)
    manifests/v<10 digits>.json            a committed manifest
    manifests/.v<10 digits>.json.tmp-<12 hex>   a manifest being committed (local disk)
    data/v<10 digits>.t<table>.c<chunk>.seg     a segment
    data/v<10 digits>.aux                  worker-side arrays
    <folder>/.spare-<12 hex>               a retired file kept to be written over (local disk)

A writer deletes a file only if its name matches one of these (``ours``) and it can show that
no manifest it cannot read, and no retained manifest, refers to it (commit.py). Anything else
in a store's folder - a user's notes, a subfolder - is never touched.
"""

from __future__ import annotations

import re

MANIFEST_DIR = "manifests"
DATA_DIR = "data"
LOCK_NAME = "LOCK"

_MANIFEST = re.compile(r"v(\d{10})\.json")
_TEMPORARY = re.compile(r"\.v\d{10}\.json\.tmp-[0-9a-f]{12}")
_DATA = re.compile(r"v(\d{10})\.(?:t\d{1,6}\.c\d{4,6}\.seg|aux)")
_SPARE = re.compile(r"\.spare-[0-9a-f]{12}")
_PROBE = re.compile(r"\.probe-[0-9a-f]{32}")


def _split(rel: str) -> tuple[str, str]:
    folder, _, name = rel.rpartition("/")
    return folder, name


def ours(rel: str) -> bool:
    """Whether ``rel`` (a path inside the store) is a name a store writer makes."""
    folder, name = _split(rel)
    if folder == MANIFEST_DIR:
        return bool(
            _MANIFEST.fullmatch(name) or _TEMPORARY.fullmatch(name) or _SPARE.fullmatch(name)
        )
    if folder == DATA_DIR:
        return bool(_DATA.fullmatch(name) or _SPARE.fullmatch(name))
    if folder == "":
        return name == LOCK_NAME or bool(_PROBE.fullmatch(name))
    return False


def is_spare(name: str) -> bool:
    """A retired file kept to be written over (``name``: a file name or a path)."""
    return bool(_SPARE.fullmatch(_split(name)[1]))


def is_temporary(name: str) -> bool:
    """A manifest being committed, or a spare: never read, and deleted by the next writer."""
    name = _split(name)[1]
    return bool(_TEMPORARY.fullmatch(name) or _SPARE.fullmatch(name))


def is_probe(name: str) -> bool:
    return bool(_PROBE.fullmatch(_split(name)[1]))


def data_version(rel: str) -> int | None:
    """The version that wrote data file ``rel`` (``data/v<version>...``), or None if it is not
    a segment or aux file's name."""
    m = _DATA.fullmatch(_split(rel)[1])
    return int(m.group(1)) if m else None


def foreign(entries: list[str], data_files: list[str]) -> list[str]:
    """Of a folder's top-level ``entries`` and the files in its ``data/``: those a store
    writer does not make (a folder holding any of them, and no manifests, is no store)."""
    out = [e for e in entries if e not in (DATA_DIR, LOCK_NAME) and not _PROBE.fullmatch(e)]
    out += [f"{DATA_DIR}/{f}" for f in data_files if not ours(f"{DATA_DIR}/{f}")]
    return out
