"""Bjøntegaard-delta rate (``bjontegaard`` package), refusing curves it cannot honestly compare.

A BD-rate is the mean horizontal (log-rate) gap between two RD curves over the quality interval
they share: -10 % means the test codec needs 10 % fewer bits for the same quality. It only means
something when both curves have enough points, rise monotonically and overlap; otherwise the
answer is "n/a" with the reason, never a number from extrapolation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import bjontegaard

# Akima interpolation is what the bjontegaard package recommends (close to the JVET/VCEG sheets).
BD_METHOD = "akima"
# Below three points the "curve" is a straight line and the result mostly reflects its slope.
MIN_POINTS = 3


@dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent, or ``None`` with the reason it cannot be computed."""

    value: float | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        return f"{self.value:+.1f}%" if self.value is not None else "n/a"

    def to_json(self) -> float | str:
        return round(self.value, 4) if self.value is not None else f"n/a ({self.reason})"


def _clean_curve(
    rates: Sequence[float], qualities: Sequence[float], label: str
) -> tuple[list[float], list[float]] | str:
    """Sorted finite points of one curve, or the reason the curve is unusable."""
    points = sorted(
        (float(r), float(q))
        for r, q in zip(rates, qualities, strict=True)
        if r is not None and q is not None and math.isfinite(r) and math.isfinite(q) and r > 0
    )
    if len(points) < MIN_POINTS:
        return f"{label} has {len(points)} usable points, {MIN_POINTS} needed"
    rate, quality = zip(*points, strict=True)
    if any(b <= a for a, b in zip(rate, rate[1:], strict=False)):
        return f"{label} repeats a rate"
    if any(b <= a for a, b in zip(quality, quality[1:], strict=False)):
        return f"{label} quality does not rise with rate"
    return list(rate), list(quality)


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
) -> BDRate:
    """BD-rate (%) of the test curve against the anchor curve."""
    anchor = _clean_curve(anchor_rates, anchor_quality, "anchor")
    if isinstance(anchor, str):
        return BDRate(None, anchor)
    test = _clean_curve(test_rates, test_quality, "test")
    if isinstance(test, str):
        return BDRate(None, test)
    low = max(anchor[1][0], test[1][0])
    high = min(anchor[1][-1], test[1][-1])
    if high <= low:
        return BDRate(None, "the curves share no quality range")
    with warnings.catch_warnings():
        # Partial overlap is legitimate (the integral is over the shared interval only).
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_rate(
            anchor[0],
            anchor[1],
            test[0],
            test[1],
            method=BD_METHOD,
            require_matching_points=False,
            min_overlap=0,
        )
    if not math.isfinite(value):
        return BDRate(None, "interpolation failed")
    return BDRate(float(value))


def average(values: Sequence[BDRate]) -> BDRate:
    """Mean of per-sequence BD-rates; n/a unless every sequence has one (a partial mean would
    silently compare different sets of content)."""
    if not values:
        return BDRate(None, "no sequences")
    missing = sum(1 for v in values if not v.available)
    if missing:
        return BDRate(None, f"{missing} of {len(values)} sequences n/a")
    return BDRate(sum(v.value for v in values) / len(values))
