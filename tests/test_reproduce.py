"""A miniature `scar reproduce` end to end: files, figures, the report's numbers, resuming."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scar.experiments.cell import reduction_ci

ARGS = [
    "reproduce",
    "--quick",
    "--models",
    "mlr",
    "--datasets",
    "mlr=digits",
    "--trials",
    "2",
    "--jobs",
    "1",
    "-q",
]


def scar(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "scar.cli", *args], capture_output=True, text=True, timeout=900, **kw
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    r = scar(*ARGS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_every_file_exists_and_figures_are_png(run):
    results = sorted(p.name for p in (run / "results").glob("*.json"))
    assert "bound-mlr-digits.json" in results
    assert sum(n.startswith("recovery-") for n in results) == 8
    assert sum(n.startswith("policy-") for n in results) == 13
    assert {"headline-mlr-digits-scar.json", "headline-mlr-digits-traditional.json"} <= set(results)
    for name in ("bound", "partial_vs_full", "policies", "headline"):
        png = (run / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        from PIL import Image

        with Image.open(run / "figures" / f"{name}.png") as im:
            im.verify()
            assert im.size[0] > 300 and im.size[1] > 200
    report = (run / "REPORT.md").read_text()
    for name in ("bound", "partial_vs_full", "policies", "headline"):
        assert f"figures/{name}.png" in report


def test_headline_numbers_in_the_report_match_the_json(run):
    report = (run / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| MLR | digits |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    docs = {
        k: json.loads((run / "results" / f"headline-mlr-digits-{k}.json").read_text())
        for k in ("traditional", "scar")
    }
    assert int(cells[4]) == docs["scar"]["summary"]["trials"] == 2
    for col, key in ((5, "traditional"), (6, "scar")):
        s = docs[key]["summary"]
        mean, std, lo, hi = map(float, re.findall(r"-?\d+\.\d+", cells[col])[:4])
        assert mean == round(s["rework_mean"], 2) and std == round(s["rework_std"], 2)
        assert (lo, hi) == (round(s["rework_ci95"][0], 2), round(s["rework_ci95"][1], 2))
    t, s = docs["traditional"]["summary"]["rework_mean"], docs["scar"]["summary"]["rework_mean"]
    lo, hi = reduction_ci(docs["traditional"]["trials"], docs["scar"]["trials"])
    assert lo <= 1 - s / t <= hi
    assert cells[7] == f"{100 * (1 - s / t):.0f} % [{100 * lo:.0f} %, {100 * hi:.0f} %]"
    assert int(cells[2]) == docs["scar"]["clean"]["clean_iterations"]


def test_a_killed_run_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "rep"
    two_workers = [a if a != "1" else "2" for a in ARGS]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scar.cli", *two_workers, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = out / "results"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 4:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "the run has worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 4 <= len(before) < 24, "the run was not interrupted part-way"
    r = scar(*ARGS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(after) == 24
    for name, mtime in before.items():
        assert after[name] == mtime, f"{name} was computed again"
    # and a third run does nothing at all
    r = scar(*ARGS, "--out", str(out))
    assert r.returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")} == after


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--models", "svm"], "--models"),
        (["--jobs", "0"], "--jobs"),
        (["--trials", "1"], "--trials"),
        (["--datasets", "mlr=nope"], "nope"),
    ],
)
def test_bad_options(tmp_path, extra, needle):
    r = scar("reproduce", "--quick", "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_report_needs_results(tmp_path):
    r = scar("report", str(tmp_path))
    assert r.returncode == 2 and "no results" in r.stderr


def trials(reworks, first_seed=0):
    return [{"rework": float(r), "seed": first_seed + i} for i, r in enumerate(reworks)]


def test_reduction_interval_covers_the_point_and_shrinks_with_trials():
    rng = np.random.default_rng(0)
    few = reduction_ci(trials(rng.poisson(8, 5)), trials(rng.poisson(1, 5), 100))
    many = reduction_ci(trials(rng.poisson(8, 200)), trials(rng.poisson(1, 200), 1000))
    assert few[0] < many[0] <= 1 - 1 / 8 + 0.05 and many[1] < few[1]
    assert many[0] > 0.8 and many[1] < 0.93
    assert reduction_ci(trials([0, 0, 0]), trials([1, 2, 3])) is None


def test_trials_of_the_same_seeds_are_resampled_as_pairs():
    """Both cells' trial i share a chain and a failure: a cost common to both (here a
    per-trial draw) cancels in pairs, so the paired interval is the narrower one."""
    rng = np.random.default_rng(1)
    common = rng.gamma(2.0, 3.0, 30)
    t, s = common + 4.0, 0.2 * common + 0.5
    paired = reduction_ci(trials(t), trials(s))
    unpaired = reduction_ci(trials(t), trials(s, 100))
    point = 1 - s.mean() / t.mean()
    assert paired[0] <= point <= paired[1] and unpaired[0] <= point <= unpaired[1]
    assert paired[1] - paired[0] < 0.5 * (unpaired[1] - unpaired[0])
