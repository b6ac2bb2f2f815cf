"""Where a headline cell stands against the paper's 78-95 % band: by its mean, qualified by the
95 % interval of the reduction whenever the interval leaves the band."""

from __future__ import annotations

import pytest

from scar.experiments.headline import verdict


def row(red, ci, scar_mean=1.0, scar_ci=(0.5, 1.5)):
    return {
        "reduction": red,
        "reduction_ci95": ci,
        "traditional": {"rework_mean": 10.0},
        "scar": {"rework_mean": scar_mean, "rework_ci95": list(scar_ci)},
    }


@pytest.mark.parametrize(
    "red, ci, short, says",
    [
        (0.85, (0.80, 0.90), "inside", "inside the paper's band (95 %"),
        (0.85, (0.40, 0.99), "inside", "reaches below and above the band"),
        (0.85, (0.60, 0.90), "inside", "reaches below the band, so"),
        (0.99, (0.90, 1.05), "above", "not significant"),
        (0.99, (0.97, 1.02), "above", "SCAR loses even less"),
        (0.50, (0.30, 0.80), "below", "reaches into the band"),
        (0.50, (0.30, 0.60), "below", "clearly less"),
    ],
)
def test_the_verdict_follows_the_mean_and_says_when_the_interval_leaves_the_band(
    red, ci, short, says
):
    got, text = verdict(row(red, ci))
    assert got == short and says in text, text
    wide = ci[0] < 0.78 or ci[1] > 0.95
    assert ("no more precisely" in text) == (short == "inside" and wide)


def test_no_interval_and_no_traditional_rework_are_said_plainly():
    assert verdict(row(0.85, None))[1].startswith("inside the paper's band.")
    assert verdict(row(None, None))[0] == "not measurable"
