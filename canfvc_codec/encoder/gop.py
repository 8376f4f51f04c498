"""The encoder side of the GOP loop: each frame's type and what its coders send.

:class:`Encoder` codes RGB frames one at a time with the model's parts and the encoder's own
choices, which the decoder never needs: the flow of the motion search
(:mod:`~canfvc_codec.encoder.motion`), the latents of
:class:`~canfvc_codec.encoder.refine.LatentRefiner`, and the frame types of
:class:`~canfvc_codec.encoder.schedule.IntraSchedule`. Its references are what the decoder
reconstructs (:class:`~canfvc_codec.engine.Engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from canfvc_codec.bitstream import StreamHeader
from canfvc_codec.encoder.motion import FlowEstimator
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.refine import INTRA_CODER, REFINE_DTYPE, LatentRefiner
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.engine import Engine
from canfvc_codec.hevc import HevcIntra
from canfvc_codec.io.frame import Frame
from canfvc_codec.networks.video import VideoModel, pad_to_multiple, to_reference
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics
from canfvc_codec.rates import Rates


def frame_cost(
    bits: float, x: torch.Tensor, x_hat: torch.Tensor, lmbda: float, size: tuple[int, int]
) -> float:
    """Rate + λ·distortion of one coded frame, the objective the networks were trained on: bits
    per pixel plus λ times the MSE of the RGB picture in [0, 1]. ``x`` is the padded input
    (..., 3, H', W'), ``x_hat`` its reconstruction before rounding to the 8-bit levels the
    decoder keeps, ``size`` the picture's (height, width) without the padding."""
    height, width = size
    picture = (..., slice(0, height), slice(0, width))
    error = to_reference(x_hat[picture]).double() - x[picture].double()
    return bits / (height * width) + lmbda * float(torch.mean(error**2))


class CodedFrame(NamedTuple):
    streams: list[bytes]
    x_hat: torch.Tensor  # padded, before rounding to 8-bit levels
    flow_hat: torch.Tensor | None = None
    planes: Frame | None = None  # an HEVC I-frame's decoded picture


@dataclass(frozen=True)
class EncoderTools:
    """What only the encoder computes, made once per encode (:func:`encoder_tools`) and shared
    by its encoders: ``motion_search`` gives the flow f_t that the motion coder codes (None: the
    model's SPyNet); ``refiner`` the latents each coder sends (None: the analysis transforms' own,
    computed by the coding networks); ``trial_model`` prices candidate I-frames (below)."""

    motion_search: FlowEstimator | None = None
    refiner: LatentRefiner | None = None
    trial_model: VideoModel | None = None


NO_TOOLS = EncoderTools()


class Encoder(Engine):
    """Codes RGB frames (3, H, W) in [0, 1] one at a time; see the module docstring.

    ``schedule`` gives the frame types. When it is adaptive, a frame it leaves to P may be coded
    as an I-frame where that lowers :func:`frame_cost`, for the frame alone or for its run of
    P-frames (:class:`~canfvc_codec.encoder.schedule.IntraSchedule`); the decoder follows the
    frame type. ``encode_video`` makes it adaptive by default (``EncodeOptions.adaptive_intra``).
    A learned inter coder is no better than intra coding after a scene cut, where the reference
    holds nothing of the new picture, and each P-frame's loss is inherited by every later one.

    ``tools.trial_model``, a float32 copy of the networks when the encoder runs in float64,
    prices the candidate I-frame (streams and reconstruction in float32: the same cost to
    ~1e-7), and the float64 networks code it only when it is kept. The candidate is coded for
    most P-frames, and float64 is several times slower on a CPU.

    With ``hevc`` the I-frames are HEVC intra pictures of the source planes that :meth:`encode`
    is given; each is decoded again at once, and that decoded picture, not the encoder's input,
    becomes the reference, as in the decoder. Candidates are priced by their real bits; they
    cost a fraction of a second, so there is no trial coding.

    ``tools`` are the encoder's own choices (:class:`EncoderTools`).
    """

    def __init__(
        self,
        model: VideoModel,
        rates: Rates,
        schedule: IntraSchedule,
        width: int,
        height: int,
        device: torch.device,
        numerics: Numerics = DEFAULT_NUMERICS,
        tools: EncoderTools = NO_TOOLS,
        hevc: HevcIntra | None = None,
    ) -> None:
        super().__init__(model, rates, width, height, device, numerics, hevc)
        self.schedule = schedule
        self.tools = tools
        trial_model = tools.trial_model
        self.trial_dtype = None if trial_model is None else next(trial_model.parameters()).dtype

    @classmethod
    def for_stream(
        cls,
        model: VideoModel,
        header: StreamHeader,
        options: EncodeOptions,
        tools: EncoderTools,
        device: torch.device,
        numerics: Numerics,
        hevc: HevcIntra | None,
    ) -> Encoder:
        """An encoder of the stream ``header`` starts, at the rates it stores (the decoder knows
        them only as stored), with the frame types ``options`` ask for."""
        schedule = IntraSchedule(options.gop, options.adaptive_intra, options.intra_choice)
        return cls(
            model, header.rates, schedule, header.width, header.height, device, numerics,
            tools, hevc
        )  # fmt: skip

    @torch.no_grad()
    def encode(
        self, rgb: torch.Tensor, source: Frame | None = None
    ) -> tuple[str, list[bytes], torch.Tensor]:
        """(frame type, streams, the decoder's reconstruction (3, H, W) on 8-bit levels).
        ``source``: the YUV planes ``rgb`` was converted from, which HEVC intra codes."""
        if tuple(rgb.shape) != (3, self.height, self.width):
            raise ValueError(f"expected a (3, {self.height}, {self.width}) frame")
        if self.hevc is not None and source is None:
            raise ValueError("HEVC intra codes the source planes: pass them as source")
        x = pad_to_multiple(rgb.to(self.device, self.dtype)[None])

        def cost(coded: CodedFrame) -> float:
            bits = 8 * sum(len(stream) for stream in coded.streams)
            return frame_cost(bits, x, coded.x_hat, self.rates.lmbda, (self.height, self.width))

        def code_intra() -> CodedFrame:
            if self.hevc is None:
                refiner, lmbda = self.tools.refiner, self.rates.intra
                latents = None if refiner is None else refiner.frame(INTRA_CODER, x, lmbda)
                return CodedFrame(*self.model.compress_intra(x, lmbda, latents))
            assert source is not None
            payload = self.hevc.encode(source)
            planes = self.hevc.decode(payload)  # the reference is the decoder's picture
            return CodedFrame([payload], self._hevc_reconstruction(planes), planes=planes)

        def trial_intra() -> CodedFrame:
            model = self.tools.trial_model
            assert model is not None
            streams, x_hat = model.compress_intra(x.to(self.trial_dtype), self.rates.intra)
            return CodedFrame(streams, x_hat.to(self.dtype))

        frame_type, coded = self.schedule.choose(
            code_intra,
            lambda: self._code_inter(x),
            cost,
            trial_intra=None if self.tools.trial_model is None or self.hevc else trial_intra,
        )
        reconstruction = self._output(frame_type, coded.x_hat, coded.flow_hat, coded.planes)
        return frame_type, coded.streams, reconstruction

    def _code_inter(self, x: torch.Tensor) -> CodedFrame:
        """A P-frame: the model's one P-frame path (:meth:`VideoModel.compress_inter`) with the
        encoder's flow and latents."""
        assert self.refs is not None
        tools = self.tools
        search = tools.motion_search or self.model.spynet
        flow = search(x, self.refs.frames[-1])
        return CodedFrame(*self.model.compress_inter(x, self.refs, self.rates, flow, tools.refiner))


def encoder_tools(
    model: VideoModel,
    options: EncodeOptions,
    search: FlowEstimator | None,
    device: torch.device,
    numerics: Numerics,
) -> EncoderTools:
    """What the encoder ``options`` ask for computes on its own, made once per encode.

    What only the encoder computes (the analysis transforms' latents, their refinement, the
    candidate I-frames of the adaptive choice, SPyNet's flow when it is the motion search) runs
    on a float32 copy of the networks when they code in another type: the decoder sees only the
    integers and the frame types it is given.
    """
    if not (options.refine or options.refine_inter or numerics.dtype != REFINE_DTYPE):
        return EncoderTools(search)
    refiner = LatentRefiner(model, options.refine, device, inter_steps=options.refine_inter)
    if numerics.dtype == REFINE_DTYPE:
        return EncoderTools(search, refiner)
    return EncoderTools(search or refiner.estimate_flow, refiner, refiner.model)
