"""benchmarks/ps_scale.py --quick runs end to end on Ray and reports what its docs page quotes:
the JSON keys, the same trajectory on both paths, and sparse pulls moving fewer bytes than full
pulls (byte counts, never times). 20-40 s: a Ray cluster of its own, four trainers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ps_scale.py"


def test_quick_run_reports_bytes_and_ratios():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["benchmark"] == "ps_scale" and doc["target"] == 1.5
    assert set(doc["ratios"]["sparse-lr"]) >= {"ratio_sparse", "ratio_full"}
    assert isinstance(doc["met"], bool)
    rows = doc["rows"]
    assert [r["model"] for r in rows] == ["sparse-lr", "sparse-lr"]
    assert rows[0]["rows"] < rows[1]["rows"]
    for r in rows:
        sparse, full = r["sparse"], r["full"]
        assert r["same_tables"]
        for m in (sparse, full):
            assert m["median_s"] > 0 and m["mean_s"] > 0
            assert m["moved_bytes"] == m["request_bytes"] + m["pull_bytes"] + m["push_bytes"]
        # full pulls: every worker receives every row; sparse: only its batch's
        assert full["pull_bytes"] == 2 * 4 * r["rows"]
        assert sparse["pull_bytes"] < full["pull_bytes"]
        assert sparse["push_bytes"] == full["push_bytes"]  # the same updates either way
        assert sparse["rows_changed"] == full["rows_changed"] > 0
        assert sparse["saved_rows"] == full["saved_rows"] > 0
    assert rows[-1]["sparse"]["moved_bytes"] < rows[-1]["full"]["moved_bytes"]
