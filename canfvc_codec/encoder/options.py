"""What ``canfvc encode`` asks of the encoder (:class:`EncodeOptions`), checked, and the rates
(:class:`~canfvc_codec.rates.Rates`) its stream is coded at."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canfvc_codec.defaults import (
    DEFAULT_DEVICE,
    DEFAULT_LAMBDA,
    DEFAULT_MODEL,
    trained_lambda_range,
)
from canfvc_codec.encoder.motion import DEFAULT_MOTION_SEARCH
from canfvc_codec.encoder.presets import check_refine_steps
from canfvc_codec.encoder.refine import DEFAULT_REFINE_STEPS
from canfvc_codec.encoder.schedule import DEFAULT_GOP, DEFAULT_INTRA_CHOICE
from canfvc_codec.errors import UsageError, warn
from canfvc_codec.hevc import DEFAULT_INTRA_CODER, HEVC, INTRA_CODERS
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics
from canfvc_codec.rates import Rates


@dataclass
class EncodeOptions:
    lmbda: float = DEFAULT_LAMBDA
    gop: int = DEFAULT_GOP  # 0 = only the first frame is intra
    # Code a P-frame as an I-frame where that pays in rate + λ·distortion (scene cuts, and
    # quality drifting over a run of P-frames); ``intra_choice`` says how (IntraSchedule).
    adaptive_intra: bool = True
    intra_choice: str = DEFAULT_INTRA_CHOICE
    # Where the flow that the motion coder codes comes from (encoder/motion.py); encoder only.
    motion_search: str = DEFAULT_MOTION_SEARCH
    # λ of the motion coders and of the I-frames; None: the defaults of
    # :meth:`~canfvc_codec.rates.Rates.resolve` (:func:`stream_rates`). Written in the header.
    motion_lmbda: float | None = None
    intra_lmbda: float | None = None
    # Gradient steps of encoder-side latent refinement per coder and frame (encoder/refine.py);
    # 0 codes the analysis transforms' latents. Encoder only, like the motion search.
    refine: int = DEFAULT_REFINE_STEPS
    # The steps of P-frames' motion and inter coders; None: ``refine``'s (I-frames gain the most
    # per step, so ``refine_inter=0`` refines only I-frames, at a fraction of the time).
    refine_inter: int | None = None
    model: str = DEFAULT_MODEL
    device: str = DEFAULT_DEVICE  # "auto" | "cpu" | "cuda"
    # How the networks compute (canfvc_codec.numerics): float64 on PyTorch's default path makes
    # streams decode anywhere (docs/determinism.md); a stream decodes only with the type it was
    # encoded with, and another path is how the determinism tests imitate another platform.
    numerics: Numerics = DEFAULT_NUMERICS
    # What codes the I-frames: "anfic" (the model's intra coder) or "hevc" (x265 intra at the QP
    # qp_for_lambda gives; canfvc_codec.hevc). Written in the header.
    intra_coder: str = DEFAULT_INTRA_CODER


def stream_rates(options: EncodeOptions, anchors: tuple[float, ...]) -> Rates:
    """The rates the header stores for an encode with ``options`` (:meth:`Rates.resolve`),
    except that HEVC I-frames are priced at λ itself, since their QP comes from λ
    (:func:`canfvc_codec.hevc.qp_for_lambda`, fitted on whole sequences)."""
    intra = options.lmbda if options.intra_coder == HEVC else options.intra_lmbda
    return Rates.resolve(options.lmbda, anchors, motion=options.motion_lmbda, intra=intra)


def warn_untrained_lambdas(options: EncodeOptions, anchors: tuple[float, ...]) -> None:
    """Warn about each λ the user set outside the model's trained range.

    The latent gains clamp λ to the anchors (canfvc_codec/nn/gain.py), so past them rate and
    quality stop moving; a user asking for ``--lambda 8192`` should know it codes as 2048.
    """
    lowest, highest = anchors[0], anchors[-1]
    for flag, value in _lambda_options(options):
        if value is not None and not lowest <= value <= highest:
            nearest = min(max(value, lowest), highest)
            warn(
                f"{flag} {value:g} is outside the model's trained range "
                f"{trained_lambda_range(anchors)}: "
                f"its latents are quantised as at {nearest:g}"
            )


def _lambda_options(options: EncodeOptions) -> tuple[tuple[str, float | None], ...]:
    return (
        ("--lambda", options.lmbda),
        ("--motion-lambda", options.motion_lmbda),
        ("--intra-lambda", options.intra_lmbda),
    )


def check_options(options: EncodeOptions) -> None:
    for option, value in _lambda_options(options):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{option} must be a positive number, got {value}")
    check_refine_steps(options.refine)
    if options.refine_inter is not None:
        check_refine_steps(options.refine_inter, "--refine-inter")
    if options.gop < 0:
        raise UsageError(
            f"--gop must be 0 (only the first frame intra) or positive, got {options.gop}"
        )
    if options.intra_coder not in INTRA_CODERS:
        raise UsageError(f"unknown intra coder {options.intra_coder!r} ({', '.join(INTRA_CODERS)})")
    if options.intra_coder == HEVC and options.intra_lmbda is not None:
        raise UsageError(
            "--intra-lambda sets the λ of ANFIC I-frames; HEVC I-frames take their QP from --lambda"
        )
