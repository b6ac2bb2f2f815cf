"""Crash consistency: writer processes SIGKILLed at random instants, again and again, by the
machinery of scripts/crash_campaign.py (docs/crash-campaign.md). After every kill the store
verifies intact, reads exactly the values saved up to its newest version, and that version is
never older than what a writer reported durable; the next writer takes over the dead one's lock
and cleans up after it.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_backends import s3_endpoint

from scar.store import DurableStore, TableSpec

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crash_campaign.py"


def _load():
    spec = importlib.util.spec_from_file_location("crash_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cc = _load()


def check(doc: dict, per_kill: float = 1.0) -> None:
    """Nothing corrupt, lost or older than durable, every writer got the lock and ran, the last
    writer left a clean store; and the writers made real progress: ``per_kill`` versions
    committed for each kill on average."""
    failures = [f for r in doc["configs"] for f in r["failures"]]
    assert doc["ok"] and not failures, failures
    for r in doc["configs"]:
        assert r["kills"] == r["attempts"] > 0, r
        assert all(r[c] == 0 for c in cc.COUNTS[1:]), r
        assert r["final_clean"] and r["cli_verifies"] >= 1, r
        assert r["highest_version"] > 0, r
    # versions committed: async writers lose the saves still queued at each kill
    versions = sum(r["highest_version"] + 1 for r in doc["configs"])
    assert versions >= per_kill * doc["total"]["kills"], doc["total"]


def test_sigkill_at_random_instants_never_loses_or_tears_a_checkpoint(tmp_path):
    doc = cc.campaign(24, ("local",), cc.MODES, seed=0, workdir=str(tmp_path), log=lambda _: None)
    assert [r["mode"] for r in doc["configs"]] == list(cc.MODES)
    check(doc)


def test_sigkill_on_s3(tmp_path):
    doc = cc.campaign(
        8,
        ("s3",),
        ("sync-raw", "async-zstd"),
        seed=0,
        cli_every=4,
        s3_endpoint=s3_endpoint(),
        log=lambda _: None,
    )
    check(doc)
    assert all(r["url"].startswith("s3://") for r in doc["configs"])


@pytest.mark.slow
def test_sigkill_two_hundred_times(tmp_path):
    doc = cc.campaign(200, ("local",), cc.MODES, seed=1, workdir=str(tmp_path), log=lambda _: None)
    check(doc, per_kill=1.5)
    landed = doc["total"]["landed"]
    # kills landed while opening (cleaning up), writing, retiring and compacting, and with
    # async saves queued
    assert min(landed[p] for p in cc.PHASES) > 0 and doc["total"]["queued"] > 0, doc["total"]


def _write(url: str, versions: range, rows_of=cc.version_rows) -> None:
    store = DurableStore(url, **cc.options("sync-raw"))
    store.open([TableSpec(name, n, w, dtype) for name, n, w, dtype in cc.TABLES])
    for v in versions:
        rows, aux = rows_of(v)
        store.save(v, rows, aux)
    store.close()


def test_the_checks_count_what_they_should(tmp_path):
    """Not vacuous: a store one version short, one with wrong values and one with a flipped
    byte are each caught under their count."""
    url = str(tmp_path / "store")
    _write(url, range(8))
    assert cc.inspect(url, 7, cc.Replay()) == (7, [], True)
    k, bad, _ = cc.inspect(url, 8, cc.Replay())  # version 8 was reported durable
    assert k == 7 and [c for c, _ in bad] == ["older_than_durable"]
    assert cc.final_check(url, "sync-raw") == ""

    wrong = str(tmp_path / "wrong")  # version 7 saved version 1's rows (and its own aux)
    _write(
        wrong, range(8), lambda v: (cc.version_rows(1 if v == 7 else v)[0], cc.version_rows(v)[1])
    )
    k, bad, _ = cc.inspect(wrong, 7, cc.Replay())
    assert k == 7 and [c for c, _ in bad] == ["lost"], bad

    seg = sorted((tmp_path / "store" / "data").glob("v*.seg"))[-1]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    k, bad, _ = cc.inspect(url, 7, cc.Replay())
    assert "corrupt" in [c for c, _ in bad], bad
    assert cc.cli_verify(url, dict(os.environ)).startswith("scar ckpt verify exit 1")
    nothing = str(tmp_path / "nothing")
    assert cc.inspect(nothing, -1, cc.Replay()) == (-1, [], False)
    assert [c for c, _ in cc.inspect(nothing, 0, cc.Replay())[1]] == ["lost"]


def test_flags_are_checked(tmp_path):
    for args in (["--kills", "0"], ["--kills", "3"], ["--backends", "gcs"], ["--modes", "sync"]):
        r = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
        assert r.returncode == 2 and r.stdout == "", (args, r)
        assert len(r.stderr.splitlines()) == 1 and "error:" in r.stderr, (args, r.stderr)
