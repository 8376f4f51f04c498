"""The rates of a stream's frames: one value, resolved once, stored in the header, passed whole.

A P-frame is coded at λ, its flow at the motion λ, and an I-frame at the intra λ. The user may set
each (``canfvc encode --lambda --motion-lambda --intra-lambda``); what is left unset follows from λ
and the model's trained range by the rules below, which the encoder and training share, so that
the coders learn the operating points they code at. The header stores the three resolved values
(``canfvc_codec.bitstream``), and the decoder reads them from there, never from a rule.

Free of torch, so that the command line can resolve and show them without loading the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from canfvc_codec.defaults import INTRA_LAMBDA_FACTOR

MOTION_LAMBDA_SHARE = 0.125  # of λ, the motion coders' default λ (auto_motion_lambda)


def auto_motion_lambda(
    lmbda: float, anchors: tuple[float, ...], share: float = MOTION_LAMBDA_SHARE
) -> float:
    """The default λ of the motion coders: ``share`` of ``lmbda``, but never below the lowest
    anchor λ the model was trained at (nor above ``lmbda``).

    Flow bits are worth only the inter-frame bits they save, and the published motion coders'
    extra bits above the lowest anchor save fewer than they cost: on bikes' development frames
    (docs/encoder.md) 256 beat 512, which beat 2048, as the motion λ at λ 2048.
    """
    return max(lmbda * share, min(lmbda, anchors[0]))


def auto_intra_lambda(
    lmbda: float, anchors: tuple[float, ...], factor: float = INTRA_LAMBDA_FACTOR
) -> float:
    """The default λ of the I-frames: ``factor`` times ``lmbda``, but never above the highest
    anchor λ the model was trained at (nor below ``lmbda``).

    Every P-frame until the next I-frame predicts from the I-frame, directly or through the
    P-frames before it, so its quality is worth more than its own distortion says: x265's default
    --ipratio 1.4 likewise codes I-frames at a quantiser step 1.4 times finer, about twice the λ.
    Over the dev clips I-frames at 2λ save 5.7 % of the bits at equal PSNR-RGB (docs/encoder.md);
    past the highest anchor the latent gains clamp λ, so the top of the range gains nothing.
    """
    return max(lmbda, min(lmbda * factor, anchors[-1]))


@dataclass(frozen=True)
class Rates:
    """The λ of a stream's P-frames (``lmbda``), of their motion coders (``motion``) and of its
    I-frames (``intra``)."""

    lmbda: float
    motion: float
    intra: float

    @classmethod
    def resolve(
        cls,
        lmbda: float,
        anchors: tuple[float, ...],
        *,
        motion: float | None = None,
        intra: float | None = None,
    ) -> Rates:
        """The rates of a stream coded at ``lmbda``: ``motion`` and ``intra`` where given, else
        :func:`auto_motion_lambda`'s and :func:`auto_intra_lambda`'s for the model's trained
        ``anchors``."""
        return cls(
            float(lmbda),
            float(auto_motion_lambda(lmbda, anchors) if motion is None else motion),
            float(auto_intra_lambda(lmbda, anchors) if intra is None else intra),
        )

    @classmethod
    def uniform(cls, lmbda: float) -> Rates:
        """Every coder at ``lmbda``, as streams written before the motion and intra λ were
        stored in the header are decoded."""
        return cls(float(lmbda), float(lmbda), float(lmbda))

    def with_intra(self, intra: float) -> Rates:
        """The same rates with the I-frames at ``intra``."""
        return Rates(self.lmbda, self.motion, float(intra))
