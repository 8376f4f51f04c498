"""The GOP loop: frames in, .cvc out, and back.

:class:`Encoder` and :class:`Decoder` work on RGB tensors of any size. They pad each frame to a
multiple of 64 (replicating the border) and crop the reconstruction back. Both keep the same
reference buffers (:class:`~canfvc_codec.networks.video.References`), filled with what the
*decoder* reconstructs: the encoder's reconstructions come from decoding its own streams, and
reference frames are rounded to 8-bit levels, what the user gets. I-frames are coded by the ANFIC
network or, with ``intra_coder="hevc"`` (CANF-VC*), by HEVC intra (:mod:`canfvc_codec.hevc`):
the reference is then the RGB conversion of the HEVC decoder's picture, and the video output that
picture's planes themselves. Frame types: I-frames where
:class:`~canfvc_codec.schedule.IntraSchedule` puts them, and, with adaptive intra, wherever an
I-frame pays in rate + λ·distortion, for the frame alone or for the run of P-frames it would
otherwise extend (:class:`Encoder`).

:func:`encode_video` and :func:`decode_video` stream frame by frame between video files and the
container, and check the CRC32 of every reconstructed frame's YUV planes so that an encoder and a
decoder that disagree (different model, platform or numerics) are noticed at the first frame.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from canfvc_codec.bitstream import (
    CvcReader,
    CvcWriter,
    FrameRecord,
    StreamHeader,
    bitrate_kbps,
    bits_per_pixel,
)
from canfvc_codec.errors import BitstreamError, InputError, ModelError, UsageError, warn
from canfvc_codec.hevc import DEFAULT_INTRA_CODER, HEVC, INTRA_CODERS, HevcIntra, qp_for_lambda
from canfvc_codec.io import VideoInfo, VideoReader, VideoWriter
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from canfvc_codec.io.frame import Frame
from canfvc_codec.motion import DEFAULT_MOTION_SEARCH, motion_search
from canfvc_codec.networks.video import PEAK_8BIT, References, VideoModel, to_reference
from canfvc_codec.numerics import (
    DECODER_DTYPE,
    DECODER_DTYPE_NAME,
    NumericPath,
    numeric_path,
    numeric_path_from_env,
    prepare_model,
    resolve_tie,
)
from canfvc_codec.presets import check_refine_steps
from canfvc_codec.refine import DEFAULT_REFINE_STEPS, REFINE_DTYPE, LatentRefiner
from canfvc_codec.schedule import (
    DEFAULT_GOP,
    DEFAULT_INTRA_CHOICE,
    INTER,
    INTRA,
    IntraSchedule,
)
from canfvc_codec.stripes import bound_memory, check_memory
from canfvc_codec.threads import check_threads
from canfvc_codec.weights import load_model, load_model_by_id

PAD_MULTIPLE = 64  # hyper-latents are at 1/64 of the frame
DEFAULT_LAMBDA = 1024.0
MOTION_LAMBDA_SHARE = 0.125  # of λ, the motion coders' default λ (auto_motion_lambda)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
PSNR_CAP = 100.0  # PSNR of an exact reconstruction, reported instead of infinity


@dataclass
class EncodeOptions:
    lmbda: float = DEFAULT_LAMBDA
    gop: int = DEFAULT_GOP  # 0 = only the first frame is intra
    # Code a P-frame as an I-frame where that pays in rate + λ·distortion (scene cuts, and
    # quality drifting over a run of P-frames); ``intra_choice`` says how (IntraSchedule).
    adaptive_intra: bool = True
    intra_choice: str = DEFAULT_INTRA_CHOICE
    # Where the flow that the motion coder codes comes from (canfvc_codec.motion); encoder only.
    motion_search: str = DEFAULT_MOTION_SEARCH
    # λ of the motion coders; None: :func:`auto_motion_lambda`. Written in the header.
    motion_lmbda: float | None = None
    # Gradient steps of encoder-side latent refinement per coder and frame (canfvc_codec.refine);
    # 0 codes the analysis transforms' latents. Encoder only, like the motion search.
    refine: int = DEFAULT_REFINE_STEPS
    # The steps of P-frames' motion and inter coders; None: ``refine``'s (I-frames gain the most
    # per step, so ``refine_inter=0`` refines only I-frames, at a fraction of the time).
    refine_inter: int | None = None
    model: str = "lite"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    # Numeric type of the networks. float64 makes streams decode anywhere (docs/determinism.md);
    # a stream decodes only with the type it was encoded with.
    dtype: str = DECODER_DTYPE_NAME
    # What codes the I-frames: "anfic" (the model's intra coder) or "hevc" (x265 intra at the QP
    # qp_for_lambda gives; canfvc_codec.hevc). Written in the header.
    intra_coder: str = DEFAULT_INTRA_CODER


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


def warn_untrained_lambdas(options: EncodeOptions, anchors: tuple[float, ...]) -> None:
    """Warn about each λ the user set outside the model's trained range.

    The latent gains clamp λ to the anchors (canfvc_codec/nn/gain.py), so past them rate and
    quality stop moving; a user asking for ``--lambda 8192`` should know it codes as 2048.
    """
    lowest, highest = anchors[0], anchors[-1]
    for flag, value in (("--lambda", options.lmbda), ("--motion-lambda", options.motion_lmbda)):
        if value is not None and not lowest <= value <= highest:
            nearest = min(max(value, lowest), highest)
            warn(
                f"{flag} {value:g} is outside the model's trained range {lowest:g}..{highest:g}: "
                f"its latents are quantised as at {nearest:g}"
            )


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r} (auto, cpu or cuda)")
    return torch.device(device)


def set_cpu_threads(threads: int) -> None:
    """Run the networks (and the DIS motion search) on ``threads`` CPU threads; 0 keeps torch's
    default of one per core. What a stream decodes to does not depend on it
    (docs/determinism.md)."""
    check_threads(threads)
    if threads:
        torch.set_num_threads(threads)


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown numeric type {name!r} ({', '.join(DTYPES)})") from None


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Pad a (N, C, H, W) tensor on the right and bottom by replicating its last row/column."""
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if not pad_h and not pad_w:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def frame_crc(frame: Frame) -> int:
    """CRC32 of the Y, U and V planes' bytes (little-endian samples), in that order."""
    crc = 0
    for plane in (frame.y, frame.u, frame.v):
        data = plane.astype(plane.dtype.newbyteorder("<"), copy=False).tobytes()
        crc = zlib.crc32(data, crc)
    return crc


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two [0, 1] tensors."""
    mse = float(torch.mean((x.double() - y.double()) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, -10.0 * math.log10(mse))


class _Engine:
    """State shared by the encoder and the decoder: model, λ, references, geometry, and the HEVC
    intra coder when it codes the I-frames (``hevc``; None: the model's ANFIC coder)."""

    def __init__(
        self,
        model: VideoModel,
        lmbda: float,
        width: int,
        height: int,
        device: torch.device,
        dtype: torch.dtype = DECODER_DTYPE,
        motion_lmbda: float | None = None,
        hevc: HevcIntra | None = None,
    ) -> None:
        # Large frames are computed in stripes so that decoding memory stays bounded.
        self.model = bound_memory(model.to(device=device, dtype=dtype).eval())
        self.lmbda = lmbda
        self.motion_lmbda = lmbda if motion_lmbda is None else motion_lmbda
        self.width, self.height = width, height
        self.device, self.dtype = device, dtype
        self.refs: References | None = None
        self.index = 0
        self.hevc = hevc
        self._planes: Frame | None = None  # the last frame's HEVC intra picture, if it was one

    def _hevc_reconstruction(self, planes: Frame) -> torch.Tensor:
        """An HEVC intra picture as the padded RGB frame x̂ that the references are made of:
        converted in float64 on the CPU, so that the encoder and any decoder, on any device, get
        the same 8-bit reference from the same (bit-exact) picture."""
        assert self.hevc is not None
        rgb = yuv_to_rgb(planes, self.hevc.info, dtype=torch.float64)
        return pad_to_multiple(rgb[None]).to(self.device, self.dtype)

    def output_planes(self, reconstruction: torch.Tensor, info: VideoInfo) -> Frame:
        """The YUV planes the decoder writes for the frame just coded: an HEVC I-frame's own
        picture, any other frame's ``reconstruction`` converted to ``info``'s format."""
        return self._planes if self._planes is not None else rgb_to_yuv(reconstruction, info)

    def _output(
        self,
        frame_type: str,
        x_hat: torch.Tensor,
        flow_hat: torch.Tensor | None,
        planes: Frame | None = None,
    ) -> torch.Tensor:
        """Store the decoded frame (and flow) as references; return it cropped, (3, H, W).
        ``planes``: the HEVC intra picture ``x_hat`` was converted from."""
        self._planes = planes
        reference = to_reference(x_hat)
        if frame_type == INTRA:
            self.refs = References([reference])
        else:
            assert self.refs is not None and flow_hat is not None
            self.refs = self.refs.push(reference, flow_hat)
        self.index += 1
        return reference[0, :, : self.height, : self.width]


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


class Encoder(_Engine):
    """Codes RGB frames (3, H, W) in [0, 1] one at a time; see the module docstring.

    With ``adaptive_intra`` a frame the schedule leaves to P may be coded as an I-frame where
    that lowers :func:`frame_cost`, for the frame alone or for its run of P-frames
    (``intra_choice``, :class:`~canfvc_codec.schedule.IntraSchedule`); the decoder follows the
    frame type. It is off here, for callers that need fixed types, and on in :func:`encode_video`
    by default (``EncodeOptions.adaptive_intra``). A learned inter coder is no better than intra
    coding after a scene cut, where the reference holds nothing of the new picture, and each
    P-frame's loss is inherited by every later one.

    ``trial_model``, a float32 copy of the networks when the encoder runs in float64, prices the
    candidate I-frame (streams and reconstruction in float32: the same cost to ~1e-7), and the
    float64 networks code it only when it is kept. The candidate is coded for most P-frames, and
    float64 is several times slower on a CPU.

    With ``hevc`` the I-frames are HEVC intra pictures of the source planes that :meth:`encode`
    is given; each is decoded again at once, and that decoded picture, not the encoder's input,
    becomes the reference, as in the decoder. Candidates are priced by their real bits; they
    cost a fraction of a second, so there is no trial coding.
    """

    def __init__(
        self,
        model: VideoModel,
        lmbda: float,
        gop: int,
        width: int,
        height: int,
        device: torch.device,
        dtype: torch.dtype = DECODER_DTYPE,
        adaptive_intra: bool = False,
        motion_lmbda: float | None = None,
        trial_model: VideoModel | None = None,
        intra_choice: str = DEFAULT_INTRA_CHOICE,
        hevc: HevcIntra | None = None,
    ) -> None:
        super().__init__(model, lmbda, width, height, device, dtype, motion_lmbda, hevc)
        self.schedule = IntraSchedule(gop, adaptive_intra, intra_choice)
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
                return CodedFrame(*self.model.compress_intra(x, self.lmbda))
            assert source is not None
            payload = self.hevc.encode(source)
            planes = self.hevc.decode(payload)  # the reference is the decoder's picture
            return CodedFrame([payload], self._hevc_reconstruction(planes), planes=planes)

        def trial_intra() -> CodedFrame:
            assert self.trial_model is not None
            streams, x_hat = self.trial_model.compress_intra(x.to(self.trial_dtype), self.lmbda)
            return CodedFrame(streams, x_hat.to(self.dtype))

        frame_type, coded = self.schedule.choose(
            code_intra,
            lambda: CodedFrame(
                *self.model.compress_inter(x, self.refs, self.lmbda, self.motion_lmbda)
            ),
            cost,
            trial_intra=None if self.trial_model is None or self.hevc else trial_intra,
        )
        reconstruction = self._output(frame_type, coded.x_hat, coded.flow_hat, coded.planes)
        return frame_type, coded.streams, reconstruction


class Decoder(_Engine):
    """Decodes frames from their type and streams; raises ValueError on malformed streams."""

    _unrounded: torch.Tensor | None = None  # the last frame before rounding to 8-bit levels

    @torch.no_grad()
    def decode(self, frame_type: str, streams: list[bytes]) -> torch.Tensor:
        """The reconstruction (3, H, W) on 8-bit levels, identical to the encoder's."""
        size = (
            self.height + (-self.height % PAD_MULTIPLE),
            self.width + (-self.width % PAD_MULTIPLE),
        )
        planes = None
        if frame_type == INTRA and self.hevc is not None:
            if len(streams) != 1:
                raise ValueError(f"an HEVC I-frame has 1 stream, got {len(streams)}")
            planes = self.hevc.decode(streams[0])
            x_hat, flow_hat = self._hevc_reconstruction(planes), None
        elif frame_type == INTRA:
            x_hat = self.model.decompress_intra(streams, size, self.lmbda)
            flow_hat = None
        elif frame_type == INTER:
            if self.refs is None:
                raise ValueError("a P-frame before any I-frame")
            x_hat, flow_hat = self.model.decompress_inter(
                streams, self.refs, self.lmbda, self.motion_lmbda
            )
        else:
            raise ValueError(f"unknown frame type {frame_type!r}")
        # An HEVC picture is output as decoded: no rounding of the decoder's own to resolve.
        self._unrounded = x_hat if planes is None else None
        return self._output(frame_type, x_hat, flow_hat, planes)

    def resolve_tie(self, matches: Callable[[torch.Tensor], bool]) -> torch.Tensor | None:
        """After a CRC mismatch: the last frame with the one sample that sat on a rounding tie
        rounded the way the encoder did, when ``matches`` (the CRC check) confirms it; else None.
        See ``numerics.resolve_tie`` and docs/determinism.md."""
        if self.refs is None or self._unrounded is None:
            return None

        def crop(reference: torch.Tensor) -> torch.Tensor:
            return reference[0, :, : self.height, : self.width]

        fixed = resolve_tie(
            self._unrounded, self.refs.frames[-1], PEAK_8BIT, lambda ref: matches(crop(ref))
        )
        if fixed is None:
            return None
        self.refs.frames[-1] = fixed
        return crop(fixed)


def _check_options(options: EncodeOptions) -> None:
    for option, value in (("--lambda", options.lmbda), ("--motion-lambda", options.motion_lmbda)):
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


def progress_bar(total: int | None, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, file=sys.stderr, disable=not enabled, unit="frame", desc=desc)


@dataclass
class EncodeSetup:
    """What :func:`encode_video` prepares before its first frame: the checked options, the
    stream header and the networks, from which :meth:`encoder` makes encoders. The GOP-parallel
    encode (:mod:`canfvc_codec.parallel`) prepares one per worker process."""

    options: EncodeOptions
    info: VideoInfo
    header: StreamHeader
    model_id: bytes
    intra_qp: int | None
    path: NumericPath
    _model: VideoModel
    _hevc: HevcIntra | None
    _trial_model: VideoModel | None

    def encoder(self) -> Encoder:
        """A fresh encoder (no references, the intra schedule at its start) over the networks
        loaded once."""
        return Encoder(
            self._model,
            self.header.lmbda,
            self.options.gop,
            self.info.width,
            self.info.height,
            resolve_device(self.options.device),
            resolve_dtype(self.options.dtype),
            adaptive_intra=self.options.adaptive_intra,
            motion_lmbda=self.header.motion_lmbda,
            trial_model=self._trial_model,
            intra_choice=self.options.intra_choice,
            hevc=self._hevc,
        )


def prepare_encode(
    options: EncodeOptions, info: VideoInfo, *, warnings: bool = True
) -> EncodeSetup:
    """Check ``options``, load the model and make the header; ``warnings``: tell the user about
    λ outside the model's trained range (once per encode, not once per worker)."""
    _check_options(options)
    flow_estimator = motion_search(options.motion_search)
    # Before any work: a missing ffmpeg or libx265 is one error line, and nothing is written.
    intra_qp = qp_for_lambda(options.lmbda) if options.intra_coder == HEVC else None
    hevc = HevcIntra(info, intra_qp) if intra_qp is not None else None
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype)
    model, model_id = load_model(options.model, "cpu")
    if warnings:
        warn_untrained_lambdas(options, model.config.anchor_lambdas)
    check_memory(model.config, info.width, info.height, dtype, task="encode")
    header = StreamHeader.for_video(
        info,
        model_id=model_id,
        gop=options.gop,
        lmbda=float(options.lmbda),
        motion_lmbda=float(
            auto_motion_lambda(options.lmbda, model.config.anchor_lambdas)
            if options.motion_lmbda is None
            else options.motion_lmbda
        ),
        intra_coder=options.intra_coder,
    )
    # The decoder only knows λ as the header stores it, so the encoder uses that same value.
    # $CANFVC_NUMERIC_PATH (tests, docs/determinism.md) changes how the networks are computed.
    path = numeric_path_from_env()
    model = prepare_model(model, path)
    model.flow_estimator = flow_estimator
    # What only the encoder computes (the analysis transforms' latents, their refinement, the
    # candidate I-frames of the adaptive choice) runs on a float32 copy: the decoder sees only
    # the integers and the frame types it is given.
    trial_model = None
    if options.refine or options.refine_inter or dtype != REFINE_DTYPE:
        refiner = model.latent_refiner = LatentRefiner(
            model, options.refine, device, inter_steps=options.refine_inter
        )
        if dtype != REFINE_DTYPE:
            trial_model = refiner.model
            model.flow_estimator = flow_estimator or refiner.estimate_flow
    return EncodeSetup(options, info, header, model_id, intra_qp, path, model, hevc, trial_model)


class EncodedFrame(NamedTuple):
    record: FrameRecord
    decoded: Frame  # what the decoder will write for the frame
    psnr: float  # PSNR-RGB of the reconstruction


def encode_frame(encoder: Encoder, frame: Frame, info: VideoInfo) -> EncodedFrame:
    """Code the next frame of a video."""
    rgb = yuv_to_rgb(frame, info, encoder.device)
    frame_type, streams, rgb_hat = encoder.encode(rgb, frame)
    decoded = encoder.output_planes(rgb_hat, info)
    record = FrameRecord(frame_type, streams, frame_crc(decoded))
    return EncodedFrame(record, decoded, psnr(rgb, rgb_hat.to(rgb.dtype)))


def finish_encode(
    setup: EncodeSetup, writer: CvcWriter, frames: list[dict], started: float
) -> dict:
    """End the stream and return :func:`encode_video`'s summary, from the entries (type, bytes,
    psnr) of the frames written."""
    header, info = setup.header, setup.info
    if header.frame_count and len(frames) != header.frame_count:
        raise InputError(f"the input ended after {len(frames)} of {header.frame_count} frames")
    writer.close()
    return {
        "frames": len(frames),
        "i_frames": sum(f["type"] == INTRA for f in frames),
        "bytes": writer.bytes_written,
        "bpp": bits_per_pixel(writer.bytes_written, info.width, info.height, max(len(frames), 1)),
        "kbps": bitrate_kbps(writer.bytes_written, len(frames), info.fps),
        "psnr_rgb": sum(f["psnr"] for f in frames) / max(len(frames), 1),
        "fps": len(frames) / (time.perf_counter() - started),
        "lambda": header.lmbda,
        "motion_lambda": header.motion_lmbda,
        "intra_coder": header.intra_coder,
        **({"intra_qp": setup.intra_qp} if setup.intra_qp is not None else {}),
        "model_id": setup.model_id.hex(),
        "per_frame": frames,
    }


def encode_video(
    reader: VideoReader,
    output: BinaryIO,
    options: EncodeOptions,
    *,
    recon: VideoWriter | None = None,
    progress: bool = True,
) -> dict:
    """Encode every frame of ``reader`` into ``output``; ``recon`` gets the reconstruction.

    Returns a summary: frames, I-frames, bytes of the whole stream (headers included), bpp over
    the unpadded pixels, the bitrate at the video's frame rate, mean PSNR-RGB, frames per second
    of wall time (model loading included) and one entry per frame (type, record bytes, psnr);
    with HEVC intra, the I-frames' QP.
    """
    started = time.perf_counter()
    info = reader.info
    setup = prepare_encode(options, info)
    writer = CvcWriter(output, setup.header)
    encoder = setup.encoder()
    frames: list[dict] = []
    with numeric_path(setup.path), progress_bar(info.frame_count, progress, "encode") as bar:
        for frame in reader:
            coded = encode_frame(encoder, frame, info)
            size = writer.write_frame(coded.record)
            if recon is not None:
                recon.write(coded.decoded)
            frame_type, quality = coded.record.frame_type, coded.psnr
            frames.append({"type": frame_type, "bytes": size, "psnr": quality})
            bar.set_postfix_str(f"{frame_type} {size} B {quality:.2f} dB", refresh=False)
            bar.update()
    return finish_encode(setup, writer, frames, started)


def _matches_crc(info: VideoInfo, crc: int) -> Callable[[torch.Tensor], bool]:
    """Whether an RGB reconstruction, written as the video's YUV, has the CRC ``crc``."""
    return lambda rgb: frame_crc(rgb_to_yuv(rgb, info)) == crc


def records_from(
    records: Iterable[FrameRecord], start: int
) -> Iterator[tuple[int, FrameRecord, bool]]:
    """(index, record, shown) for what a decode from frame ``start`` needs: the records from the
    last I-frame at or before ``start`` (an I-frame resets the references), those before
    ``start`` not shown. The records before that I-frame are read, not decoded."""
    lead_in: list[tuple[int, FrameRecord]] = []
    for index, record in enumerate(records):
        if record.frame_type == INTRA:
            lead_in.clear()
        if index < start:
            lead_in.append((index, record))
            continue
        for earlier, earlier_record in lead_in:
            yield earlier, earlier_record, False
        lead_in.clear()
        yield index, record, True


def decode_checked(decoder: Decoder, info: VideoInfo, index: int, record: FrameRecord) -> Frame:
    """Frame ``index`` decoded and checked against the encoder's CRC (a rounding tie resolved)."""
    try:
        rgb_hat = decoder.decode(record.frame_type, record.streams)
    except BitstreamError as exc:
        if exc.frame is not None:
            raise
        raise BitstreamError(str(exc), frame=index) from None
    except (ValueError, RuntimeError, IndexError, OverflowError) as exc:
        raise BitstreamError(f"cannot decode: {exc}", frame=index) from None
    decoded = decoder.output_planes(rgb_hat, info)
    if frame_crc(decoded) != record.recon_crc:
        rgb_hat = decoder.resolve_tie(_matches_crc(info, record.recon_crc))
        decoded = rgb_to_yuv(rgb_hat, info) if rgb_hat is not None else None
    if decoded is None:
        raise BitstreamError(
            "reconstruction does not match the encoder's (CRC mismatch): "
            "different model, device or platform numerics",
            frame=index,
        )
    return decoded


def past_the_end(start: int, frame_count: int) -> str:
    return f"--start {start} is past the end ({frame_count} frames)"


@dataclass
class DecodeSetup:
    """The networks a stream decodes with, loaded once; :meth:`decoder` makes decoders."""

    header: StreamHeader
    path: NumericPath
    _model: VideoModel
    _device: torch.device
    _dtype: torch.dtype
    _hevc: HevcIntra | None

    def decoder(self) -> Decoder:
        """A fresh decoder, which starts at an I-frame."""
        header = self.header
        return Decoder(
            self._model,
            header.lmbda,
            header.width,
            header.height,
            self._device,
            self._dtype,
            header.motion_lmbda,
            self._hevc,
        )


def prepare_decode(
    header: StreamHeader, device: str, model: str | None, dtype: str = DECODER_DTYPE_NAME
) -> DecodeSetup:
    """Load the networks ``header`` names (or ``model``, which must be that one) and check that
    this machine can decode the stream."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    hevc = HevcIntra(header.video_info) if header.intra_coder == HEVC else None
    if model is None:
        network, model_id = load_model_by_id(header.model_id, "cpu")
    else:
        network, model_id = load_model(model, "cpu")
        if model_id != header.model_id:
            raise ModelError(
                f"the file was encoded with model {header.model_id.hex()}, "
                f"but {model!r} is model {model_id.hex()}"
            )
    check_memory(network.config, header.width, header.height, torch_dtype)
    path = numeric_path_from_env()
    network = prepare_model(network, path)
    return DecodeSetup(header, path, network, torch_device, torch_dtype, hevc)


def decode_video(
    source: BinaryIO,
    open_output: Callable[[VideoInfo], VideoWriter],
    *,
    device: str = "auto",
    model: str | None = None,
    progress: bool = True,
    dtype: str = DECODER_DTYPE_NAME,
    start: int = 0,
    frames: int | None = None,
) -> dict:
    """Decode a .cvc stream into the writer ``open_output(info)`` returns.

    Without ``model`` the header's model id is looked up in ``models/``; HEVC intra I-frames
    need ffmpeg's HEVC decoder, checked before anything is written. Every frame's
    reconstruction is checked against the CRC the encoder stored. ``start`` and ``frames`` pick
    the frames written: decoding begins at the last I-frame at or before ``start`` (an I-frame
    resets the references), and the records after the range are not read.
    """
    started = time.perf_counter()
    return decode_stream(
        CvcReader(source),
        open_output,
        device=device,
        model=model,
        progress=progress,
        dtype=dtype,
        start=start,
        frames=frames,
        started=started,
    )


def decode_stream(
    reader: CvcReader,
    open_output: Callable[[VideoInfo], VideoWriter],
    *,
    device: str = "auto",
    model: str | None = None,
    progress: bool = True,
    dtype: str = DECODER_DTYPE_NAME,
    start: int = 0,
    frames: int | None = None,
    started: float | None = None,
) -> dict:
    """:func:`decode_video` of a stream whose header ``reader`` has read; ``started``: when the
    decode began (perf_counter), for the summary's frame rate."""
    started = time.perf_counter() if started is None else started
    header = reader.header
    if header.frame_count and start >= header.frame_count:
        raise UsageError(past_the_end(start, header.frame_count))
    if header.width % 2 or header.height % 2:
        # The container allows any size; 4:2:0 video (all canfvc codes) needs even ones.
        raise BitstreamError(f"header: frame size {header.width}x{header.height} is not even")
    info = header.video_info
    if header.frame_count:
        remaining = header.frame_count - start
        info = replace(info, frame_count=min(remaining, frames or remaining))
    setup = prepare_decode(header, device, model, dtype)
    decoder = setup.decoder()

    count = lead_in_frames = 0
    with (
        numeric_path(setup.path),
        open_output(info) as writer,
        progress_bar(info.frame_count, progress, "decode") as bar,
    ):
        for index, record, shown in records_from(reader, start):
            decoded = decode_checked(decoder, info, index, record)
            if not shown:
                lead_in_frames += 1
                continue
            writer.write(decoded)
            count += 1
            bar.set_postfix_str(f"{record.frame_type}", refresh=False)
            bar.update()
            if count == frames:
                break
        if start and not count:  # a stream written to a pipe does not know its length in advance
            raise UsageError(past_the_end(start, reader.frames_read))  # inside: nothing written
    return {
        "frames": count,
        "lead_in_frames": lead_in_frames,
        "fps": (count + lead_in_frames) / (time.perf_counter() - started),
        "width": header.width,
        "height": header.height,
        "lambda": header.lmbda,
    }
