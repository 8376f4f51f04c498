"""BD-rate on textbook curves, and the cases that must answer n/a."""

from __future__ import annotations

import pytest

from canfvc_codec.eval.bdrate import BDRate, average, bd_rate

RATES = [0.05, 0.1, 0.2, 0.4]
PSNR = [30.0, 33.0, 36.0, 39.0]


@pytest.mark.parametrize("scale", [0.9, 0.75, 1.2])
def test_scaled_rate_gives_the_scale(scale):
    # Same quality at scale x the rate everywhere: the BD-rate is exactly (scale - 1).
    result = bd_rate(RATES, PSNR, [r * scale for r in RATES], PSNR)
    assert result.value == pytest.approx((scale - 1) * 100, abs=1e-6)


def test_identical_curves_give_zero_and_better_quality_gives_saving():
    assert bd_rate(RATES, PSNR, RATES, PSNR).value == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, RATES, [q + 1 for q in PSNR]).value < 0


def test_point_order_does_not_matter():
    result = bd_rate(RATES[::-1], PSNR[::-1], [r * 0.9 for r in RATES], PSNR)
    assert result.value == pytest.approx(-10.0)


@pytest.mark.parametrize(
    ("rates", "quality", "reason"),
    [
        (RATES[:2], PSNR[:2], "usable points"),
        (RATES, [30.0, 34.0, 33.0, 39.0], "does not rise"),
        (RATES, [50.0, 51.0, 52.0, 53.0], "share no quality range"),
        (RATES, [30.0, float("nan"), None, 39.0], "usable points"),
    ],
)
def test_unusable_curves_are_na(rates, quality, reason):
    result = bd_rate(RATES, PSNR, rates, quality)
    assert result.value is None and reason in result.reason
    assert str(result) == "n/a" and result.to_json().startswith("n/a (")


def test_average_needs_every_sequence():
    assert average([BDRate(-10.0), BDRate(-20.0)]).value == pytest.approx(-15.0)
    assert average([BDRate(-10.0), BDRate(None, "x")]).value is None
