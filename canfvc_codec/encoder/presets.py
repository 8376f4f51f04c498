"""Encoder presets: named trade-offs of encoding time against bits, as x265's ``--preset``.

A preset sets only encoder choices (the latent refinement steps of
:mod:`canfvc_codec.encoder.refine`), so any preset's stream decodes with any canfvc in the same
time. An option given on the command line overrides its preset's value, as in x265. Free of torch,
so that the command line can list the presets without loading the networks.

Each preset is a refinement setting measured on real files (``docs/encoder.md``, "Presets",
holds the figures: bits saved at equal quality, encoding time). ``slow`` refines only the
I-frames, which save the most bits per second of encoding time (every P-frame predicts from
them, and they take one backward pass per step where a P-frame takes three).
"""

from __future__ import annotations

from dataclasses import dataclass

from canfvc_codec.errors import UsageError


@dataclass(frozen=True)
class Preset:
    """The encoder choices a preset makes: refinement steps of I-frames and of P-frames."""

    refine: int
    refine_inter: int


PRESETS = {
    "medium": Preset(refine=0, refine_inter=0),
    "slow": Preset(refine=12, refine_inter=0),
    "slower": Preset(refine=12, refine_inter=4),
    "veryslow": Preset(refine=12, refine_inter=12),
}
DEFAULT_PRESET = "medium"

# Each step is a backward pass through the coder, so N steps cost about N encodes of the frame,
# and 24 steps already saved less than 12 (docs/encoder.md). The bound keeps a mistyped count
# from starting an encode that would run for days.
MAX_REFINE_STEPS = 100


def check_refine_steps(steps: int, option: str = "--refine") -> None:
    if not 0 <= steps <= MAX_REFINE_STEPS:
        raise UsageError(
            f"{option} must be 0 (off) or a number of steps up to {MAX_REFINE_STEPS}, got {steps}"
        )


def refine_steps(preset: str, refine: int | None, refine_inter: int | None) -> tuple[int, int]:
    """The refinement steps of I-frames and P-frames: ``preset``'s, where the command line gave
    none. An explicit ``refine`` also sets P-frames' steps unless ``refine_inter`` is given, as
    ``--refine N`` alone always has."""
    chosen = PRESETS[preset]
    steps = chosen.refine if refine is None else refine
    inter_default = chosen.refine_inter if refine is None else steps
    return steps, inter_default if refine_inter is None else refine_inter
