"""Coding at a target rate: ``canfvc encode --bitrate 500k`` or ``--bpp 0.1``.

One λ codes the whole stream, and the header stores it as any stream's (no format change). It is
found by a search over the clip that measures the real coded size of a trial encode at each λ it
tries (pass 1), and the stream is the trial that met the target (pass 2 codes it again only to
write the reconstruction too). The rate rises with λ about as a power of it, so the search works
on log rate against log λ: from the middle of the model's trained range, a step by a typical
slope, then the secant between the trials either side of the target. The trained range bounds
the search: past its ends the latents are quantised as at the nearest end, and the rate hardly
moves (docs/encoder.md).

Torch-free: the command line parses and checks a target before loading the networks.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from canfvc_codec.errors import UsageError, warn

if TYPE_CHECKING:
    from canfvc_codec.encoder.options import EncodeOptions
    from canfvc_codec.io import VideoReader, VideoWriter

# The average rate over the clip meets a target within this share of it.
RATE_TOLERANCE = 0.03
# Full encodes of the clip the search may try before it keeps the closest.
MAX_RATE_TRIALS = 8
# d log(rate) / d log(λ) before two trials measure it: 0.43 on bikes' dev frames over λ
# 256..2048 (README), 0.26 on a 64x64 crop of them.
TYPICAL_RATE_SLOPE = 0.35
# Trials closer than this ratio of λ code the same stream but for a frame type or two: a
# narrower bracket finds nothing new (the rate jumps there, at an adaptive I-frame).
MIN_LAMBDA_RATIO = 1.001

BITRATE_OPTION, BPP_OPTION = "--bitrate", "--bpp"
KBPS, BPP = "kbps", "bpp"  # the summary's keys of the two rates
BITRATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6}
BITS_PER_KILOBIT = 1000
_BITRATE = re.compile(r"\s*([-+]?[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([km]?)\s*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class RateTarget:
    """The average rate an encode is to meet: ``value`` in the summary's ``unit`` (kbit/s, or
    bits per pixel), as the user wrote it (``text``) with ``option``."""

    value: float
    unit: str
    option: str
    text: str

    def describe(self, rate: float) -> str:
        """``rate`` in this target's unit, as the messages write it."""
        return f"{rate:.4g} kbit/s" if self.unit == KBPS else f"{rate:.4g} bpp"

    def miss(self, rate: float) -> float:
        """How far ``rate`` is from the target, as a share of it."""
        return abs(rate / self.value - 1.0)


def parse_bitrate(text: str) -> RateTarget:
    """``--bitrate``: bits per second with an optional k or M (``500k``, ``2M``, ``800000``),
    as ffmpeg's ``-b:v`` takes them."""
    match = _BITRATE.match(str(text))
    if match is None:
        raise UsageError(
            f"{BITRATE_OPTION} {text}: not a bitrate (bits per second, e.g. 500k or 2M)"
        )
    bits = float(match.group(1)) * BITRATE_PREFIXES[match.group(2).lower()]
    if not (math.isfinite(bits) and bits > 0):
        raise UsageError(f"{BITRATE_OPTION} {text}: must be more than 0")
    return RateTarget(bits / BITS_PER_KILOBIT, KBPS, BITRATE_OPTION, str(text).strip())


def parse_bpp(text: str | float) -> RateTarget:
    """``--bpp``: bits per pixel of the video (over its unpadded pictures, as ``canfvc info``)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{BPP_OPTION} {text}: not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{BPP_OPTION} {text}: must be more than 0")
    return RateTarget(value, BPP, BPP_OPTION, f"{text}")


def rate_target(bitrate: str | float | None, bpp: str | float | None) -> RateTarget | None:
    """The target ``--bitrate`` or ``--bpp`` sets, checked; None for neither."""
    if bitrate is not None and bpp is not None:
        raise UsageError(f"give {BITRATE_OPTION} or {BPP_OPTION}, not both")
    if bitrate is not None:
        return parse_bitrate(str(bitrate))
    if bpp is not None:
        return parse_bpp(bpp)
    return None


# ----------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class Trial:
    """One encode of the whole clip at ``lmbda``, and its average ``rate``."""

    lmbda: float
    rate: float


Coded = TypeVar("Coded")


def search_lambda(
    measure: Callable[[float], tuple[float, Coded]],
    target: RateTarget,
    lowest: float,
    highest: float,
) -> tuple[Trial, Coded, list[Trial]]:
    """(the trial kept, what it coded, every trial in order): ``measure(λ)`` codes the clip at
    λ and returns its average rate and what it coded. The first trial within
    :data:`RATE_TOLERANCE` is kept; else, after :data:`MAX_RATE_TRIALS` or where the rate jumps
    past the target, the closest, with a warning. A target that an end of the range
    [``lowest``, ``highest``] misses on the far side is refused (UsageError). Only the closest
    trial's coding is held, never every trial's."""
    trials: list[Trial] = []
    below: Trial | None = None  # the trial of highest λ under the target
    above: Trial | None = None  # the trial of lowest λ over it
    best: tuple[Trial, Coded] | None = None
    lmbda = math.sqrt(lowest * highest)  # the middle of the range, on a log scale
    while len(trials) < MAX_RATE_TRIALS:
        rate, coded = measure(lmbda)
        trial = Trial(lmbda, rate)
        trials.append(trial)
        if best is None or target.miss(rate) < target.miss(best[0].rate):
            best = (trial, coded)
        if target.miss(rate) <= RATE_TOLERANCE:
            return trial, coded, trials
        if rate > target.value:
            if lmbda <= lowest:
                raise UsageError(
                    f"{target.option} {target.text} is below what the lowest λ reaches on this "
                    f"clip: {target.describe(rate)} at λ {lowest:g}"
                )
            above = trial if above is None or lmbda < above.lmbda else above
        else:
            if lmbda >= highest:
                raise UsageError(
                    f"{target.option} {target.text} is above what the highest λ reaches on this "
                    f"clip: {target.describe(rate)} at λ {highest:g}"
                )
            below = trial if below is None or lmbda > below.lmbda else below
        if below is not None and above is not None:
            if above.lmbda / below.lmbda < MIN_LAMBDA_RATIO:
                break
            lmbda = _between(below, above, target.value)
        else:
            lmbda = min(max(_step(trials, target.value), lowest), highest)
    assert best is not None
    kept, coded = best
    warn(
        f"{target.option} {target.text}: the nearest rate found is {target.describe(kept.rate)} "
        f"(λ {kept.lmbda:.6g}), {100 * target.miss(kept.rate):.1f} % off: the rate jumps there, "
        "where a frame type changes"
    )
    return kept, coded, trials


def _step(trials: list[Trial], target: float) -> float:
    """The next λ from the last trial, on the slope of the last two (the typical one until
    there are two, or where theirs is not positive): every trial so far is on one side."""
    last = trials[-1]
    slope = TYPICAL_RATE_SLOPE
    if len(trials) > 1:
        previous = trials[-2]
        measured = math.log(last.rate / previous.rate) / math.log(last.lmbda / previous.lmbda)
        slope = measured if measured > 0 else slope
    return last.lmbda * (target / last.rate) ** (1.0 / slope)


def _between(below: Trial, above: Trial, target: float) -> float:
    """The secant's λ between the trials either side of the target, on log rate against log λ;
    the bracket's middle where the secant would land outside its middle 90 % (or the rates
    are equal, or fall with λ)."""
    low, high = math.log(below.lmbda), math.log(above.lmbda)
    rise = math.log(above.rate) - math.log(below.rate)
    middle = (low + high) / 2
    if rise <= 0:
        return math.exp(middle)
    guess = low + (math.log(target) - math.log(below.rate)) * (high - low) / rise
    margin = 0.05 * (high - low)
    inside = low + margin <= guess <= high - margin
    return math.exp(guess if inside else middle)


# ----------------------------------------------------------------------------- the encode

# Codes the video a reader gives into a binary output with the options, writing the
# reconstruction into the writer where one is given; returns the encode's summary.
Code = Callable[["VideoReader", BinaryIO, "EncodeOptions", "VideoWriter | None"], dict]


def encode_to_rate(
    open_video: Callable[[], AbstractContextManager[VideoReader]],
    output: BinaryIO,
    options: EncodeOptions,
    target: RateTarget,
    anchors: tuple[float, ...],
    code: Code,
    recon: VideoWriter | None = None,
) -> dict:
    """Encode the video ``open_video()`` opens (once per trial) into ``output`` at the one λ
    that meets ``target``, searched over the model's trained range ``anchors``
    (:func:`search_lambda`); ``recon`` gets the reconstruction. Returns the stream's summary,
    with the target and the trials coded."""

    def measure(lmbda: float) -> tuple[float, tuple[dict, bytes]]:
        buffer = io.BytesIO()
        with open_video() as reader:
            summary = code(reader, buffer, replace(options, lmbda=lmbda), None)
        return summary[target.unit], (summary, buffer.getvalue())

    kept, (summary, stream), trials = search_lambda(measure, target, anchors[0], anchors[-1])
    if recon is None:
        output.write(stream)
    else:  # the same encode again, this time writing the reconstruction
        with open_video() as reader:
            summary = code(reader, output, replace(options, lmbda=kept.lmbda), recon)
    return {**summary, f"target_{target.unit}": target.value, "rate_trials": len(trials)}


def check_rereadable(input_name: str, stdin_name: str) -> None:
    """A target rate codes the input more than once: stdin cannot be read again."""
    if input_name == stdin_name:
        raise UsageError(
            f"{BITRATE_OPTION} and {BPP_OPTION} read the input more than once: name an input "
            "file instead of -"
        )
