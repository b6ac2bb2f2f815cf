"""Checks shared by the per-model acceptance tests. ``cells`` maps (checkpoint, recovery) to
the result document of a cell; every cell sees the same failures (same seeds)."""

from scar.experiments.cell import run_cell


def full_rollback_costs_exactly_the_steps_since_the_checkpoint(cfg, fail_at, period=10):
    """A full rollback of a deterministic algorithm re-does exactly the iterations since the
    checkpoint (``cfg``: the model's cell configuration builder)."""
    doc = run_cell(
        cfg(
            checkpoint="full",
            recovery="full",
            period=period,
            fail_at=fail_at,
            trials=2,
            lost_shards=2,
        )
    )
    for t in doc["trials"]:
        assert t["rework"] == fail_at % period and not t["censored"]


def partial_costs_less_than_full(cells):
    mean = {k: d["summary"]["rework_mean"] for k, d in cells.items()}
    assert mean[("full", "partial")] < mean[("full", "full")], mean
    assert mean[("priority", "partial")] < 0.5 * mean[("full", "full")], mean
    for d in cells.values():
        assert d["summary"]["censored"] == 0


def priority_beats_the_others_at_equal_bytes(cells, event_bytes):
    """Priority's mean rework is below round-robin's and random's, and every partial policy
    wrote the bytes per iteration of the full policy to within one complete checkpoint
    (``event_bytes``) spread over the run."""
    mean = {k[0]: d["summary"]["rework_mean"] for k, d in cells.items() if k[1] == "partial"}
    assert mean["priority"] < mean["round-robin"], mean
    assert mean["priority"] < mean["random"], mean
    full = cells[("full", "partial")]["trials"]
    for (c, r), d in cells.items():
        if r == "full":
            continue  # a rollback re-does iterations without saving: fewer bytes per iteration
        assert d["summary"]["trials"] >= 10
        for t, f in zip(d["trials"], full, strict=True):
            assert (t["fail_at"], t["lost_shards"]) == (f["fail_at"], f["lost_shards"])
            tolerance = event_bytes / min(t["failed_iterations"], f["failed_iterations"])
            assert abs(t["bytes_per_iteration"] - f["bytes_per_iteration"]) <= tolerance, c
