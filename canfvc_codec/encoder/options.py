"""What ``canfvc encode`` asks of the encoder (:class:`EncodeOptions`), checked, and the λ of
the motion coders when the user leaves it to the encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canfvc_codec.defaults import (
    DEFAULT_DEVICE,
    DEFAULT_LAMBDA,
    DEFAULT_MODEL,
    DEFAULT_NUMERIC_PATH,
    INTRA_LAMBDA_FACTOR,
    trained_lambda_range,
)
from canfvc_codec.encoder.motion import DEFAULT_MOTION_SEARCH
from canfvc_codec.encoder.presets import check_refine_steps
from canfvc_codec.encoder.refine import DEFAULT_REFINE_STEPS
from canfvc_codec.encoder.schedule import DEFAULT_GOP, DEFAULT_INTRA_CHOICE
from canfvc_codec.errors import UsageError, warn
from canfvc_codec.hevc import DEFAULT_INTRA_CODER, HEVC, INTRA_CODERS
from canfvc_codec.numerics import DECODER_DTYPE_NAME

MOTION_LAMBDA_SHARE = 0.125  # of λ, the motion coders' default λ (auto_motion_lambda)


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
    # λ of the motion coders; None: :func:`auto_motion_lambda`. Written in the header.
    motion_lmbda: float | None = None
    # λ of the I-frames; None: :func:`auto_intra_lambda`. Written in the header.
    intra_lmbda: float | None = None
    # Gradient steps of encoder-side latent refinement per coder and frame (encoder/refine.py);
    # 0 codes the analysis transforms' latents. Encoder only, like the motion search.
    refine: int = DEFAULT_REFINE_STEPS
    # The steps of P-frames' motion and inter coders; None: ``refine``'s (I-frames gain the most
    # per step, so ``refine_inter=0`` refines only I-frames, at a fraction of the time).
    refine_inter: int | None = None
    model: str = DEFAULT_MODEL
    device: str = DEFAULT_DEVICE  # "auto" | "cpu" | "cuda"
    # Numeric type of the networks. float64 makes streams decode anywhere (docs/determinism.md);
    # a stream decodes only with the type it was encoded with.
    dtype: str = DECODER_DTYPE_NAME
    # What codes the I-frames: "anfic" (the model's intra coder) or "hevc" (x265 intra at the QP
    # qp_for_lambda gives; canfvc_codec.hevc). Written in the header.
    intra_coder: str = DEFAULT_INTRA_CODER
    # How the networks are computed on a CPU (numerics.NUMERIC_PATHS): another path is how the
    # determinism tests imitate another platform.
    numeric_path: str = DEFAULT_NUMERIC_PATH


def auto_motion_lambda(
    lmbda: float, anchors: tuple[float, ...], share: float = MOTION_LAMBDA_SHARE
) -> float:
    """The encoder's default λ for the motion coders: ``share`` of ``lmbda``, but never below the
    lowest anchor λ the model was trained at (nor above ``lmbda``).

    Flow bits are worth only the inter-frame bits they save, and the published motion coders'
    extra bits above the lowest anchor save fewer than they cost: on bikes' development frames
    (docs/encoder.md) 256 beat 512, which beat 2048, as the motion λ at λ 2048.
    """
    return max(lmbda * share, min(lmbda, anchors[0]))


def auto_intra_lambda(
    lmbda: float, anchors: tuple[float, ...], factor: float = INTRA_LAMBDA_FACTOR
) -> float:
    """The encoder's default λ for the I-frames: ``factor`` times ``lmbda``, but never above the
    highest anchor λ the model was trained at (nor below ``lmbda``).

    Every P-frame until the next I-frame predicts from the I-frame, directly or through the
    P-frames before it, so its quality is worth more than its own distortion says: x265's default
    --ipratio 1.4 likewise codes I-frames at a quantiser step 1.4 times finer, about twice the λ.
    Over the dev clips I-frames at 2λ save 5.7 % of the bits at equal PSNR-RGB (docs/encoder.md);
    past the highest anchor the latent gains clamp λ, so the top of the range gains nothing.
    """
    return max(lmbda, min(lmbda * factor, anchors[-1]))


def intra_lambda(options: EncodeOptions, anchors: tuple[float, ...]) -> float:
    """The λ the header stores for the I-frames: the one asked for, else
    :func:`auto_intra_lambda`'s; λ itself for HEVC I-frames, whose QP comes from λ
    (:func:`canfvc_codec.hevc.qp_for_lambda`, fitted on whole sequences)."""
    if options.intra_coder == HEVC:
        return float(options.lmbda)
    if options.intra_lmbda is not None:
        return float(options.intra_lmbda)
    return float(auto_intra_lambda(options.lmbda, anchors))


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
