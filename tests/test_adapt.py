"""The full run's adaptive trials: a headline pair gets trials until its reduction's interval
is narrow enough, or the cap."""

import json
import shutil

import pytest

from scar.experiments.adapt import adapt_trials
from scar.experiments.cell import reduction_ci
from scar.experiments.suite import plan, run_suite


def test_headline_pairs_get_trials_until_the_interval_is_narrow(tmp_path):
    tasks = [t for t in plan(["mlr"], quick=True, trials=3) if t.experiment == "headline"]
    tasks = [t for t in tasks if t.dataset == "bio"]
    run_suite(tasks, tmp_path)
    seen = []
    adapt_trials(
        tasks, tmp_path, width=0.2, cap=9, step=3, on_step=lambda t, n, w: seen.append((n, w))
    )
    docs = [json.loads((tmp_path / "results" / f"{t.id}.json").read_text()) for t in tasks]
    n = len(docs[0]["trials"])
    assert n == len(docs[1]["trials"]) and n in (3, 6, 9)
    ci = reduction_ci(docs[0]["trials"], docs[1]["trials"])
    assert ci[1] - ci[0] <= 0.2 or n == 9  # narrow enough, or the cap
    assert [x[0] for x in seen] == list(range(3, n + 1, 3))
    assert all(w > 0.2 for _, w in seen[:-1])  # it stopped at the first narrow one
    for d in docs:
        assert [t["seed"] for t in d["trials"]] == list(range(n))  # the next seeds, in order
        assert d["summary"]["trials"] == n
        assert d["adaptive"]["width"] == seen[-1][1]
    # resumable: read back narrow enough (or at the cap), nothing is added
    adapt_trials(tasks, tmp_path, width=0.2, cap=9, step=3)
    assert (
        len(json.loads((tmp_path / "results" / f"{tasks[0].id}.json").read_text())["trials"]) == n
    )


def test_the_report_sets_rebuild_beside_partial_and_full_recovery(tmp_path):
    from scar.experiments.report import write_report

    tasks = [
        t
        for t in plan(["lda"], quick=True, trials=2)
        if t.experiment == "headline" and t.dataset == "reuters"
    ]
    assert sorted(t.id.rsplit("-", 1)[1] for t in tasks) == ["rebuild", "scar", "traditional"]
    assert not [t for t in plan(["mlr"], quick=True) if t.id.endswith("-rebuild")]
    run_suite(tasks, tmp_path)
    adapt_trials(tasks, tmp_path, width=0.0, cap=4, step=2)  # never narrow: to the cap
    docs = {t.id: json.loads((tmp_path / "results" / f"{t.id}.json").read_text()) for t in tasks}
    # the rebuild cell follows the pair, trial for trial
    assert {len(d["trials"]) for d in docs.values()} == {4}
    seeds = [[t["seed"] for t in d["trials"]] for d in docs.values()]
    assert seeds[0] == seeds[1] == seeds[2]
    report = write_report(tmp_path, "test").read_text()
    section = report.split("## Beyond the paper: recovery by recomputation")[1]
    row = next(line for line in section.splitlines() if line.startswith("| LDA | reuters |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].startswith("0.00 ± 0.00 [0.00, 0.00]")  # LDA's counts: exact
    assert cells[5].endswith("→ 0")  # no perturbation left
    assert cells[6].endswith(" ms")


def test_pairs_adapted_in_worker_processes_get_the_same_trials(tmp_path):
    tasks = [
        t
        for t in plan(["mlr", "lda"], quick=True, trials=2)
        if t.experiment == "headline" and t.dataset in ("bio", "reuters")
    ]
    run_suite(tasks, tmp_path / "cells")
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        shutil.copytree(tmp_path / "cells", out)
        seen = []
        adapt_trials(
            tasks, out, width=0.0, cap=4, step=2, jobs=jobs,
            on_step=lambda t, n, w, seen=seen: seen.append((t.id, n)),
        )  # fmt: skip
        runs[jobs] = {
            t.id: json.loads((out / "results" / f"{t.id}.json").read_text()) for t in tasks
        }
        # in workers, each pair reports once, when it is done
        finals = sorted(x for x in seen if x[1] == 4)
        assert finals == sorted((t.id, 4) for t in tasks if t.id.endswith("-scar"))
    assert len(runs[1]) == 5  # MLR's pair; LDA's pair and its rebuild cell

    # the same trials: seeds, failures, lost shards and counts exactly; real numbers up to the
    # rounding of BLAS's sums, which follow its thread count (one thread in each worker; the
    # bound, a ratio of small norms, moves in its 5th digit)
    def close(a, b):
        if isinstance(a, float):
            return b == pytest.approx(a, rel=1e-4, abs=1e-9)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        return a == b

    for tid, doc in runs[1].items():
        other = runs[2][tid]
        assert len(doc["trials"]) == len(other["trials"]) == 4
        for a, b in zip(doc["trials"], other["trials"], strict=True):
            a.pop("rebuild_seconds", None), b.pop("rebuild_seconds", None)  # wall times
            assert close(a, b), (tid, a, b)
        assert close(doc.get("adaptive"), other.get("adaptive")), tid
