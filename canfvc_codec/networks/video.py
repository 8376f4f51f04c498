"""The whole CANF-VC system: intra coder, motion coders, flow extrapolation, MC and inter coder.

P-frame coding (paper §3.2, Fig. 2a):

1. flow f_t = SPyNet(x_t, x̂_{t-1}), or the flow the caller gives (the encoder's motion search,
   :mod:`canfvc_codec.encoder.motion`; only the encoder estimates motion);
2. motion: the first P-frame of a GOP has no decoded flow to extrapolate from, so f_t is coded by
   the plain hyperprior coder; later P-frames code f_t with the conditional CANF coder given
   f_c = extrapolation(x̂_{t-3..t-1}, f̂_{t-2..t-1}), temporal prior from warp(x̂_{t-1}, f_c);
3. x_c = MC(x̂_{t-1}, f̂_t);
4. inter: the conditional CANF coder of x_t given x_c, temporal prior from x_c.

:class:`References` holds the decoded frames (at most 3) and flows (at most 2). Early in a GOP it
holds fewer: the extrapolation then repeats the oldest entry it has (the second P-frame sees
frames (x̂_0, x̂_0, x̂_1) and flows (f̂_1, f̂_1), i.e. "motion continues").

One P-frame path: ``forward_inter`` (training), ``compress_inter`` (the encoder) and
``decompress_inter`` (the decoder) are the same four steps built from the same parts
(:meth:`VideoModel.motion_coder`, the motion coder, ``mc``, the inter coder). The encoder's own
choices enter as arguments: the flow of its motion search, and the latents it sends
(:class:`PFrameChoices`, refined in :mod:`canfvc_codec.encoder.refine`); without them the
analysis transforms' latents are coded. The model holds no encoder state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canfvc_codec.networks.anf_coder import AnfCoder, CoderOutput, Latents
from canfvc_codec.networks.conditional import ConditionalCoder
from canfvc_codec.networks.config import ModelConfig
from canfvc_codec.networks.intra import IntraCoder
from canfvc_codec.networks.motion import MotionHyperpriorCoder
from canfvc_codec.nn import stripes
from canfvc_codec.nn.dq import QualityEnhancement
from canfvc_codec.nn.extrapolation import FLOWS, FRAMES, FlowExtrapolation
from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.nn.mc import MotionCompensation
from canfvc_codec.nn.spynet import SpyNet
from canfvc_codec.rates import Rates

RGB = 3
FLOW = 2
PEAK_8BIT = 255.0
# Eq. 12 weighs ‖y2 − x_c‖² by λ1 = 0.01 λ2 (paper §4.1).
CONDITION_WEIGHT = 0.01
INTRA_STREAMS = 2
INTER_STREAMS = 4  # motion hyper, motion latent, inter hyper, inter latent
# Frames are coded padded to a multiple of this (replicating the border): the hyper-latents are at
# 1/64 of the frame.
PAD_MULTIPLE = 64


def padded_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a frame as the networks code it."""
    return height + (-height % PAD_MULTIPLE), width + (-width % PAD_MULTIPLE)


def pad_to_multiple(x: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """Pad a (N, C, H, W) tensor on the right and bottom by replicating its last row/column."""
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if not pad_h and not pad_w:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def to_reference(x: Tensor) -> Tensor:
    """A decoded frame as the decoder keeps it: clipped to [0, 1] and rounded to 8-bit levels."""
    return torch.round(x.clamp(0.0, 1.0) * PEAK_8BIT) / PEAK_8BIT


@dataclass
class References:
    """Decoded frames and flows, oldest first, newest last."""

    frames: list[Tensor]
    flows: list[Tensor] = field(default_factory=list)

    @property
    def first_p(self) -> bool:
        """No decoded flow yet: the next P-frame is the first of its GOP."""
        return not self.flows

    def push(self, frame: Tensor, flow: Tensor) -> References:
        """The buffers after decoding one more P-frame."""
        return References([*self.frames, frame][-FRAMES:], [*self.flows, flow][-FLOWS:])

    def padded(self) -> tuple[list[Tensor], list[Tensor]]:
        """Exactly 3 frames and 2 flows, repeating the oldest entry where there are fewer."""
        if not self.frames or not self.flows:
            raise ValueError("flow extrapolation needs at least one decoded frame and flow")
        frames = [self.frames[0]] * (FRAMES - len(self.frames)) + self.frames[-FRAMES:]
        flows = [self.flows[0]] * (FLOWS - len(self.flows)) + self.flows[-FLOWS:]
        return frames, flows


class PFrameChoices(Protocol):
    """The encoder's choice of the latents a P-frame's coders send
    (:class:`~canfvc_codec.encoder.refine.LatentRefiner`); the decoder needs none of it."""

    def motion_latents(
        self, motion: MotionCoding, flow: Tensor, lmbda: float, reference: Tensor, x: Tensor
    ) -> Latents:
        """The latents coding ``flow`` with ``motion``, for the prediction of ``x`` from
        ``reference``."""
        ...

    def inter_latents(self, x: Tensor, x_c: Tensor, lmbda: float) -> Latents:
        """The latents coding ``x`` given its prediction ``x_c``."""
        ...


class MotionCoding(NamedTuple):
    """What codes the next P-frame's flow: the coder's name in :meth:`VideoModel.coders`, the
    coder, its condition f_c and its temporal-prior input (None for the first P-frame)."""

    name: str
    coder: AnfCoder
    condition: Tensor | None
    prior_input: Tensor | None


@dataclass
class FrameOutput:
    """``VideoModel.forward`` for one frame: reconstruction, rates and the terms of Eq. 12.

    ``likelihoods`` is keyed "<coder>.<stream>", e.g. "motion.latent", "inter.hyper".
    ``condition_mse`` is the per-sample ‖y2 − x_c‖² of the frame coder (ANFIC: ‖y2‖²).
    """

    x_hat: Tensor
    likelihoods: dict[str, Tensor]
    condition_mse: Tensor
    flow: Tensor | None = None  # estimated f_t
    flow_hat: Tensor | None = None  # decoded f̂_t
    x_c: Tensor | None = None  # motion-compensated frame
    coders: dict[str, CoderOutput] = field(default_factory=dict)

    def bits(self) -> Tensor:
        """Estimated bits per sample, (N,)."""
        return sum(out.bits() for out in self.coders.values())  # type: ignore[return-value]

    def bpp(self) -> Tensor:
        """Estimated bits per pixel per sample, (N,)."""
        return self.bits() / (self.x_hat.shape[-2] * self.x_hat.shape[-1])

    def loss(self, x: Tensor, lmbda: float | Tensor) -> dict[str, Tensor]:
        """Eq. 12 with d = MSE: rate + 0.01 λ ‖y2 − x_c‖² + λ d(x, x̂), averaged over the batch."""
        weight = torch.as_tensor(lmbda, dtype=x.dtype, device=x.device).reshape(-1)
        rate = self.bpp()
        distortion = F.mse_loss(self.x_hat, x, reduction="none").flatten(1).mean(dim=1)
        total = rate + weight * (CONDITION_WEIGHT * self.condition_mse + distortion)
        return {
            "loss": total.mean(),
            "bpp": rate.mean(),
            "mse": distortion.mean(),
            "condition_mse": self.condition_mse.mean(),
        }


class VideoModel(nn.Module):
    """Every network of the codec; see the module docstring for the data flow."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        anchors = config.anchor_lambdas
        self.intra = IntraCoder(config.intra, self._enhancement(config), anchors)
        self.motion_first = MotionHyperpriorCoder(config.motion, anchors)
        self.motion = ConditionalCoder(FLOW, config.motion, RGB, anchors=anchors)
        self.inter = ConditionalCoder(
            RGB,
            config.inter,
            RGB,
            enhance=self._enhancement(config),
            anchors=anchors,
        )
        self.spynet = SpyNet(config.spynet_levels, config.spynet_channels)
        self.extrapolation = FlowExtrapolation(
            config.extrapolation_channels, config.unet_scale, config.zero_residuals
        )
        self.mc = MotionCompensation(config.mc_channels, config.unet_scale, config.zero_residuals)

    @staticmethod
    def _enhancement(config: ModelConfig) -> QualityEnhancement:
        """The quality enhancement (DQ) after a frame decoder; intra and inter have one each."""
        return QualityEnhancement(
            config.dq_channels, config.dq_blocks, config.dq_scale, config.zero_residuals
        )

    def coders(self) -> dict[str, nn.Module]:
        return {
            "intra": self.intra,
            "motion_first": self.motion_first,
            "motion": self.motion,
            "inter": self.inter,
        }

    def update(self) -> None:
        """Rebuild every coder's integer hyper-latent tables (before compressing or saving)."""
        for coder in self.coders().values():
            coder.update()  # type: ignore[operator]

    def aux_loss(self) -> Tensor:
        return sum(coder.aux_loss() for coder in self.coders().values())  # type: ignore[return-value]

    # -- how the networks compute (canfvc_codec.numerics.Numerics sets these) -----------------

    def compute_in_stripes(self, enabled: bool = True) -> VideoModel:
        """Compute large frames in bounded memory (:mod:`canfvc_codec.nn.stripes`), as the codec
        does: convolutions without large unfolded buffers, and the full-resolution networks
        (flow extrapolation's and motion compensation's U-Nets, the quality enhancements) on row
        stripes. Training leaves it off. Returns the model."""
        stripes.compute_in_stripes(self, enabled)
        return self

    def use_library_convolutions(self, enabled: bool = True) -> VideoModel:
        """PyTorch's own float64 convolutions instead of the shifted products that
        :meth:`compute_in_stripes` uses: another summation order, a numerical path of
        docs/determinism.md. Returns the model."""
        stripes.use_library_convolutions(self, enabled)
        return self

    # -- pieces shared by forward, compress and decompress ------------------------------------

    def motion_coder(self, refs: References) -> MotionCoding:
        """What codes the next P-frame's flow: the plain coder for the first P-frame of a GOP,
        else the conditional one given f_c."""
        if refs.first_p:
            return MotionCoding("motion_first", self.motion_first, None, None)
        f_c, prior = self.motion_condition(refs)
        return MotionCoding("motion", self.motion, f_c, prior)

    def flow(self, x: Tensor, reference: Tensor, flow: Tensor | None = None) -> Tensor:
        """f_t: ``flow`` as the caller's motion search gives it, else SPyNet's."""
        return self.spynet(x, reference) if flow is None else flow

    def motion_condition(self, refs: References) -> tuple[Tensor, Tensor]:
        """(f_c, warp(x̂_{t-1}, f_c)): the condition and temporal-prior input of motion coding."""
        frames, flows = refs.padded()
        f_c = self.extrapolation(frames, flows)
        return f_c, backward_warp(refs.frames[-1], f_c)

    # -- training -----------------------------------------------------------------------------

    def forward_intra(self, x: Tensor, lmbda: float | Tensor) -> FrameOutput:
        out = self.intra(x, lmbda)
        return FrameOutput(
            out.x_hat,
            {f"intra.{k}": v for k, v in out.likelihoods.items()},
            out.condition_mse,
            coders={"intra": out},
        )

    def forward_motion(
        self, x: Tensor, refs: References, lmbda: float | Tensor, flow: Tensor | None = None
    ) -> tuple[CoderOutput, Tensor, Tensor]:
        """The motion half of a P-frame: (motion coder output, flow f_t, x_c). ``flow``: f_t as
        the caller's motion search gives it; None: SPyNet's."""
        reference = refs.frames[-1]
        flow = self.flow(x, reference, flow)
        _, coder, cond, prior = self.motion_coder(refs)
        motion = coder(flow, lmbda, cond, prior)
        return motion, flow, self.mc(reference, motion.x_hat)

    def forward_inter(
        self, x: Tensor, refs: References, rates: Rates, flow: Tensor | None = None
    ) -> FrameOutput:
        """A P-frame in training: the motion coder at ``rates.motion``, the inter coder at
        ``rates.lmbda``, as :meth:`compress_inter` codes it."""
        motion, flow, x_c = self.forward_motion(x, refs, rates.motion, flow)
        inter = self.inter(x, rates.lmbda, x_c, x_c)
        likelihoods = {f"motion.{k}": v for k, v in motion.likelihoods.items()}
        likelihoods.update({f"inter.{k}": v for k, v in inter.likelihoods.items()})
        return FrameOutput(
            inter.x_hat,
            likelihoods,
            inter.condition_mse,
            flow=flow,
            flow_hat=motion.x_hat,
            x_c=x_c,
            coders={"motion": motion, "inter": inter},
        )

    def forward(
        self,
        x: Tensor,
        lmbda: float | Tensor,
        refs: References | None = None,
        flow: Tensor | None = None,
    ) -> FrameOutput:
        """An I-frame at ``lmbda`` when ``refs`` is None, else a P-frame coded from ``refs`` with
        every coder at ``lmbda`` (with the flow ``flow``, or SPyNet's)."""
        if refs is None:
            return self.forward_intra(x, lmbda)
        return self.forward_inter(x, refs, Rates.uniform(float(lmbda)), flow=flow)

    # -- coding -------------------------------------------------------------------------------

    @torch.no_grad()
    def compress_intra(
        self, x: Tensor, lmbda: float, latents: Latents | None = None
    ) -> tuple[list[bytes], Tensor]:
        """(streams, x̂) for an I-frame; x̂ is decoded from the streams. ``latents``: what to
        code (the encoder's choice); None: the analysis transforms' latents."""
        return self.intra.compress(x, lmbda, latents=latents)

    @torch.no_grad()
    def decompress_intra(self, streams: list[bytes], size: tuple[int, int], lmbda: float) -> Tensor:
        if len(streams) != INTRA_STREAMS:
            raise ValueError(f"an I-frame has {INTRA_STREAMS} streams, got {len(streams)}")
        return self.intra.decompress(streams, size, lmbda)

    @torch.no_grad()
    def compress_inter(
        self,
        x: Tensor,
        refs: References,
        rates: Rates,
        flow: Tensor | None = None,
        choices: PFrameChoices | None = None,
    ) -> tuple[list[bytes], Tensor, Tensor]:
        """(streams, x̂, f̂) for a P-frame; x̂ and f̂ are decoded from the streams, exactly as
        :meth:`decompress_inter` decodes them. ``flow`` is f_t, the encoder's motion search
        (default: SPyNet's); ``choices`` the latents each coder sends (default: the analysis
        transforms')."""
        reference = refs.frames[-1]
        flow = self.flow(x, reference, flow)
        motion = self.motion_coder(refs)
        latents = None
        if choices is not None:
            latents = choices.motion_latents(motion, flow, rates.motion, reference, x)
        motion_streams, flow_hat = motion.coder.compress(
            flow, rates.motion, motion.condition, motion.prior_input, latents
        )
        x_c = self.mc(reference, flow_hat)
        latents = None if choices is None else choices.inter_latents(x, x_c, rates.lmbda)
        inter_streams, x_hat = self.inter.compress(x, rates.lmbda, x_c, x_c, latents)
        return motion_streams + inter_streams, x_hat, flow_hat

    @torch.no_grad()
    def decompress_inter(
        self, streams: list[bytes], refs: References, rates: Rates
    ) -> tuple[Tensor, Tensor]:
        """(x̂, f̂) of a P-frame from :meth:`compress_inter`'s streams."""
        if len(streams) != INTER_STREAMS:
            raise ValueError(f"a P-frame has {INTER_STREAMS} streams, got {len(streams)}")
        reference = refs.frames[-1]
        size = (reference.shape[-2], reference.shape[-1])
        motion = self.motion_coder(refs)
        flow_hat = motion.coder.decompress(
            streams[:2], size, rates.motion, motion.condition, motion.prior_input
        )
        x_c = self.mc(reference, flow_hat)
        x_hat = self.inter.decompress(streams[2:], size, rates.lmbda, x_c, x_c)
        return x_hat, flow_hat
