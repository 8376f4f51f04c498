"""The divergence watch of training runs (canfvc_codec/train/divergence.py)."""

from __future__ import annotations

import math

from canfvc_codec.train.divergence import (
    CONSECUTIVE,
    DROP_DB,
    HISTORY,
    MIN_HISTORY,
    DivergenceWatch,
)


def _warmed(phase: str = "intra", psnr: float = 30.0) -> DivergenceWatch:
    watch = DivergenceWatch()
    for k in range(MIN_HISTORY):
        assert not watch.observe(phase, psnr + (k % 2))  # windows vary with λ
    return watch


def test_windows_that_vary_as_lambda_does_never_count_as_divergence() -> None:
    watch = _warmed()
    for k in range(3 * HISTORY):
        assert not watch.observe("intra", 30.0 + 1.5 * math.sin(k))
    assert watch.healthy and len(watch.recent["intra"]) == HISTORY


def test_a_drop_that_lasts_is_a_divergence_and_one_bad_window_is_not() -> None:
    watch = _warmed()
    low = 30.0 - DROP_DB - 1.0
    assert not watch.observe("intra", low) and not watch.healthy
    assert not watch.observe("intra", 30.0) and watch.healthy  # it came back
    verdicts = [watch.observe("intra", low) for _ in range(CONSECUTIVE)]
    assert verdicts == [False] * (CONSECUTIVE - 1) + [True]
    assert min(watch.recent["intra"]) >= 30.0  # the dropped windows are not history
    watch.reset()
    assert watch.healthy


def test_each_phase_is_judged_against_its_own_windows() -> None:
    watch = _warmed("intra", 30.0)
    for _ in range(MIN_HISTORY):
        assert not watch.observe("ipppp", 22.0)  # a new phase starts without history
    assert not watch.observe("intra", 29.0)


def test_a_window_without_a_psnr_counts_as_a_drop_from_the_start() -> None:
    """A window whose MSE was not finite has no PSNR (NaN): a drop even before any history."""
    watch = DivergenceWatch()
    verdicts = [watch.observe("flow", math.nan) for _ in range(CONSECUTIVE)]
    assert verdicts == [False] * (CONSECUTIVE - 1) + [True] and not watch.recent["flow"]
