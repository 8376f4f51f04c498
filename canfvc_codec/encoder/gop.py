"""The encoder side of the GOP loop: each frame's type and what its coders send.

:class:`Encoder` codes RGB frames one at a time with the model's parts and the encoder's own
choices, which the decoder never needs: the flow of the motion search
(:mod:`~canfvc_codec.encoder.motion`), the latents of
:class:`~canfvc_codec.encoder.refine.LatentRefiner`, and the frame types of
:class:`~canfvc_codec.encoder.schedule.IntraSchedule`. Its references are what the decoder
reconstructs (:class:`~canfvc_codec.engine.Engine`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from canfvc_codec.bitstream import StreamHeader
from canfvc_codec.encoder.motion import FlowEstimator
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.refine import INTRA_CODER, REFINE_DTYPE, LatentRefiner
from canfvc_codec.encoder.schedule import DEFAULT_INTRA_CHOICE, IntraSchedule
from canfvc_codec.engine import Engine
from canfvc_codec.hevc import HevcIntra
from canfvc_codec.io.frame import Frame
from canfvc_codec.networks.video import VideoModel, pad_to_multiple, to_reference
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics

INTER_CODER = "inter"


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


class Encoder(Engine):
    """Codes RGB frames (3, H, W) in [0, 1] one at a time; see the module docstring.

    With ``adaptive_intra`` a frame the schedule leaves to P may be coded as an I-frame where that
    lowers :func:`frame_cost`, for the frame alone or for its run of P-frames (``intra_choice``,
    :class:`~canfvc_codec.encoder.schedule.IntraSchedule`); the decoder follows the frame type. It
    is off here, for callers that need fixed types, and on in ``encode_video`` by default
    (``EncodeOptions.adaptive_intra``). A learned inter coder is no better than intra coding after a
    scene cut, where the reference holds nothing of the new picture, and each P-frame's loss is
    inherited by every later one.

    ``trial_model``, a float32 copy of the networks when the encoder runs in float64, prices the
    candidate I-frame (streams and reconstruction in float32: the same cost to ~1e-7), and the
    float64 networks code it only when it is kept. The candidate is coded for most P-frames, and
    float64 is several times slower on a CPU.

    With ``hevc`` the I-frames are HEVC intra pictures of the source planes that :meth:`encode`
    is given; each is decoded again at once, and that decoded picture, not the encoder's input,
    becomes the reference, as in the decoder. Candidates are priced by their real bits; they
    cost a fraction of a second, so there is no trial coding.

    ``motion_search`` gives the flow f_t that the motion coder codes (None: the model's SPyNet);
    ``refiner`` the latents each coder sends (None: the analysis transforms' own, computed by
    the coding networks).
    """

    def __init__(
        self,
        model: VideoModel,
        lmbda: float,
        gop: int,
        width: int,
        height: int,
        device: torch.device,
        numerics: Numerics = DEFAULT_NUMERICS,
        adaptive_intra: bool = False,
        motion_lmbda: float | None = None,
        trial_model: VideoModel | None = None,
        intra_choice: str = DEFAULT_INTRA_CHOICE,
        hevc: HevcIntra | None = None,
        motion_search: FlowEstimator | None = None,
        refiner: LatentRefiner | None = None,
        intra_lmbda: float | None = None,
    ) -> None:
        super().__init__(
            model, lmbda, width, height, device, numerics, motion_lmbda, hevc, intra_lmbda
        )
        self.schedule = IntraSchedule(gop, adaptive_intra, intra_choice)
        self.motion_search = motion_search
        self.refiner = refiner
        self.trial_model = trial_model
        self.trial_dtype = None if trial_model is None else next(trial_model.parameters()).dtype

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
            return frame_cost(bits, x, coded.x_hat, self.lmbda, (self.height, self.width))

        def code_intra() -> CodedFrame:
            if self.hevc is None:
                refiner, lmbda = self.refiner, self.intra_lmbda
                latents = None if refiner is None else refiner.frame(INTRA_CODER, x, lmbda)
                return CodedFrame(*self.model.compress_intra(x, lmbda, latents))
            assert source is not None
            payload = self.hevc.encode(source)
            planes = self.hevc.decode(payload)  # the reference is the decoder's picture
            return CodedFrame([payload], self._hevc_reconstruction(planes), planes=planes)

        def trial_intra() -> CodedFrame:
            model = self.trial_model
            assert model is not None
            streams, x_hat = model.compress_intra(x.to(self.trial_dtype), self.intra_lmbda)
            return CodedFrame(streams, x_hat.to(self.dtype))

        frame_type, coded = self.schedule.choose(
            code_intra,
            lambda: self._code_inter(x),
            cost,
            trial_intra=None if self.trial_model is None or self.hevc else trial_intra,
        )
        reconstruction = self._output(frame_type, coded.x_hat, coded.flow_hat, coded.planes)
        return frame_type, coded.streams, reconstruction

    def _code_inter(self, x: torch.Tensor) -> CodedFrame:
        """A P-frame from the model's parts, with the encoder's flow and latents: the flow f_t,
        coded by the motion coder; x_c, the reference compensated with the decoded flow; the
        frame, coded by the inter coder given x_c."""
        assert self.refs is not None
        model, refiner = self.model, self.refiner
        reference = self.refs.frames[-1]
        search = self.motion_search or model.spynet
        flow = search(x, reference)
        motion = model.motion_coder(self.refs)
        latents = None
        if refiner is not None:
            latents = refiner.motion(
                motion.name,
                flow,
                self.motion_lmbda,
                reference,
                x,
                motion.condition,
                motion.prior_input,
            )
        motion_streams, flow_hat = model.compress_motion(flow, motion, self.motion_lmbda, latents)
        x_c = model.mc(reference, flow_hat)
        latents = None if refiner is None else refiner.frame(INTER_CODER, x, self.lmbda, x_c, x_c)
        inter_streams, x_hat = model.compress_inter_frame(x, x_c, self.lmbda, latents)
        return CodedFrame(motion_streams + inter_streams, x_hat, flow_hat)


def build_encoder(
    model: VideoModel,
    options: EncodeOptions,
    header: StreamHeader,
    search: FlowEstimator | None,
    device: torch.device,
    numerics: Numerics,
    hevc: HevcIntra | None,
) -> Encoder:
    """The encoder ``options`` ask for, coding at the λ values ``header`` stores (the decoder
    knows them only as stored).

    What only the encoder computes (the analysis transforms' latents, their refinement, the
    candidate I-frames of the adaptive choice, SPyNet's flow when it is the motion search) runs
    on a float32 copy of the networks when they code in another type: the decoder sees only the
    integers and the frame types it is given.
    """
    refiner = trial_model = None
    if options.refine or options.refine_inter or numerics.dtype != REFINE_DTYPE:
        refiner = LatentRefiner(model, options.refine, device, inter_steps=options.refine_inter)
        if numerics.dtype != REFINE_DTYPE:
            trial_model = refiner.model
            search = search or refiner.estimate_flow
    return Encoder(
        model,
        header.lmbda,
        options.gop,
        header.width,
        header.height,
        device,
        numerics,
        adaptive_intra=options.adaptive_intra,
        motion_lmbda=header.motion_lmbda,
        trial_model=trial_model,
        intra_choice=options.intra_choice,
        hevc=hevc,
        motion_search=search,
        refiner=refiner,
        intra_lmbda=header.intra_lmbda,
    )
