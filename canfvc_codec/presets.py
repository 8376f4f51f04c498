"""Encoder presets: named trade-offs of encoding time against bits, as x265's ``--preset``.

A preset sets only encoder choices (the latent refinement steps of :mod:`canfvc_codec.refine`),
so any preset's stream decodes with any canfvc in the same time. An option given on the command
line overrides its preset's value, as in x265. Free of torch, so that the command line can list
the presets without loading the networks.

Each preset is one of the settings measured on real files of bikes' first 8 development frames,
640x272, λ 256..2048, with model ``dbaef592e6d12596`` (``docs/encoder.md``, "Latent refinement";
BD-rate in PSNR-RGB against ``medium``, encoding time per frame on one thread of a 2-core CPU):

==========  =========================  ==========  ================
preset      refinement steps (I / P)   BD-rate     encode s/frame
==========  =========================  ==========  ================
medium      0 / 0                      --          21
slow        12 / 0                     -6.3 %      42-54
slower      12 / 4                     -7.9 %      89-100
veryslow    12 / 12                    -9.9 %      181-197
==========  =========================  ==========  ================

With the published model (``35f6baed47735d0a``) and the ``run`` intra choice, ``slow`` measured
-7.6 % (PSNR-RGB) on the same frames, at 46-86 s per frame against 19-24.

``slow`` refines only the I-frames, which save the most bits per second of encoding time (every
P-frame predicts from them, and they take one backward pass per step where a P-frame takes three).
"""

from __future__ import annotations

from dataclasses import dataclass


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


def refine_steps(preset: str, refine: int | None, refine_inter: int | None) -> tuple[int, int]:
    """The refinement steps of I-frames and P-frames: ``preset``'s, where the command line gave
    none. An explicit ``refine`` also sets P-frames' steps unless ``refine_inter`` is given, as
    ``--refine N`` alone always has."""
    chosen = PRESETS[preset]
    if refine is None:
        return chosen.refine, chosen.refine_inter if refine_inter is None else refine_inter
    return refine, refine if refine_inter is None else refine_inter
