"""The command line: the experiment contract, and one clear line + exit 2 for every mistake."""

import json
import subprocess
import sys

import pytest

BASE = [
    "--model",
    "mlr",
    "--dataset",
    "digits",
    "--optimizer",
    "gd",
    "--shards",
    "8",
    "--lost-shards",
    "2",
    "--checkpoint",
    "priority",
    "--recovery",
    "partial",
    "--trials",
    "1",
]


def scar(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "scar.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_experiment_writes_the_documented_schema_and_is_reproducible(tmp_path):
    args = [
        "experiment",
        "--model",
        "mlr",
        "--dataset",
        "digits",
        "--optimizer",
        "gd",
        "--shards",
        "8",
        "--lost-shards",
        "2",
        "--checkpoint",
        "full",
        "--period",
        "10",
        "--recovery",
        "full",
        "--fail-at",
        "37",
        "--trials",
        "2",
        "--seed",
        "0",
        "-q",
    ]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r = scar(*args, "--output", str(a))
    assert r.returncode == 0, r.stderr
    assert scar(*args, "--output", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert set(doc) >= {"config", "trials", "summary"}
    for t in doc["trials"]:
        assert set(t) >= {
            "seed",
            "fail_at",
            "lost_shards",
            "clean_iterations",
            "failed_iterations",
            "rework",
            "perturbation_norm",
            "bound",
            "bytes_written",
            "censored",
        }
        assert t["rework"] == 7 and t["fail_at"] == 37 and len(t["lost_shards"]) == 2
    assert doc["summary"]["rework_mean"] == 7 and doc["summary"]["rework_std"] == 0
    assert doc["summary"]["trials"] == 2 and doc["summary"]["censored"] == 0
    assert (
        doc["config"]["dataset"] == "digits" and doc["config"]["algorithm"]["dataset"] == "digits"
    )


def test_experiment_prints_a_table(tmp_path):
    r = scar("experiment", *BASE, "--fraction", "0.25", "--output", str(tmp_path / "x.json"))
    assert r.returncode == 0, r.stderr
    assert "rework" in r.stdout and "priority" in r.stdout
    r = scar("summary", str(tmp_path / "x.json"))
    assert r.returncode == 0 and "priority" in r.stdout


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--fraction", "0"], "fraction"),
        (["--fraction", "1.5"], "fraction"),
        (["--fraction", "nan"], "fraction"),
        (["--shards", "8", "--lost-shards", "9"], "lost-shards"),
        (["--lost-fraction", "0.5"], "exactly one"),
        (["--dataset", "no-such-data"], "no-such-data"),
        (["--model", "svm"], "model"),
        (["--optimizer", "adam"], "optimizer"),
        (["--checkpoint", "sometimes"], "checkpoint"),
        (["--recovery", "half"], "recovery"),
        (["--period", "0"], "period"),
        (["--trials", "0"], "trials"),
        (["--shards", "many"], "shards"),
        (["--fail-at", "100000"], "fail-at"),
        (["--lr", "-1"], "lr"),
        (["--bogus-flag"], "bogus"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, extra, needle):
    out = tmp_path / "x.json"
    r = scar("experiment", *BASE, *extra, "--output", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not out.exists()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for target in (blocker / "x.json", tmp_path / "missing-dir" / "x.json", tmp_path):
        r = scar("experiment", *BASE, "--output", str(target))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "output" in r.stderr


def test_summary_of_a_missing_or_foreign_file(tmp_path):
    r = scar("summary", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "no such result file" in r.stderr
    (tmp_path / "other.json").write_text("[1, 2]")
    r = scar("summary", str(tmp_path / "other.json"))
    assert r.returncode == 2 and "not a scar experiment result" in r.stderr


def test_help_and_version():
    assert scar("--help").returncode == 0
    r = scar("experiment", "--help")
    assert r.returncode == 0 and "--lost-fraction" in r.stdout
    assert scar("--version").returncode == 0
