"""The stream-level glue: frames in, .cvc out, and back.

:func:`encode_video` reads a video, codes it with the encoder (:mod:`canfvc_codec.encoder`) and
writes the container; :func:`decode_video` reads the container and writes the video through
:class:`Decoder`. Both work on RGB frames padded to a multiple of 64 (replicating the border) and
crop the reconstruction back, and both keep the references the decoder reconstructs
(:class:`~canfvc_codec.engine.Engine`). I-frames are coded by the ANFIC network or, with
``intra_coder="hevc"`` (CANF-VC*), by HEVC intra (:mod:`canfvc_codec.hevc`). Every frame record
holds the CRC32 of the reconstruction's YUV planes, so that an encoder and a decoder that
disagree (different model, platform or numerics) are noticed at the first frame.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, NamedTuple

import torch
from tqdm import tqdm

from canfvc_codec.bitstream import (
    INTER,
    INTRA,
    CvcReader,
    CvcWriter,
    FrameRecord,
    StreamHeader,
    bitrate_kbps,
    bits_per_pixel,
)
from canfvc_codec.device import resolve_device
from canfvc_codec.encoder.gop import Encoder, EncoderTools, encoder_tools
from canfvc_codec.encoder.motion import FlowEstimator, motion_search
from canfvc_codec.encoder.options import (
    EncodeOptions,
    check_options,
    stream_rates,
    warn_untrained_lambdas,
)
from canfvc_codec.engine import Engine
from canfvc_codec.errors import BitstreamError, InputError, ModelError, UsageError
from canfvc_codec.hevc import HEVC, HevcIntra, qp_for_lambda
from canfvc_codec.io import VideoInfo, VideoReader, VideoWriter
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from canfvc_codec.io.frame import Frame
from canfvc_codec.memory import check_memory
from canfvc_codec.networks.video import PEAK_8BIT, VideoModel, padded_size
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics, resolve_tie
from canfvc_codec.psnr import psnr_from_mse
from canfvc_codec.weights import load_model, load_model_by_id


def frame_crc(frame: Frame) -> int:
    """CRC32 of the Y, U and V planes' bytes (little-endian samples), in that order."""
    crc = 0
    for plane in (frame.y, frame.u, frame.v):
        data = plane.astype(plane.dtype.newbyteorder("<"), copy=False).tobytes()
        crc = zlib.crc32(data, crc)
    return crc


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two [0, 1] tensors."""
    return psnr_from_mse(float(torch.mean((x.double() - y.double()) ** 2)))


class Decoder(Engine):
    """Decodes frames from their type and streams; raises ValueError on malformed streams."""

    _unrounded: torch.Tensor | None = None  # the last frame before rounding to 8-bit levels

    @classmethod
    def for_stream(
        cls,
        model: VideoModel,
        header: StreamHeader,
        device: torch.device,
        numerics: Numerics,
        hevc: HevcIntra | None,
    ) -> Decoder:
        """A decoder of the stream ``header`` starts, at the rates it stores."""
        return cls(model, header.rates, header.width, header.height, device, numerics, hevc)

    @torch.no_grad()
    def decode(self, frame_type: str, streams: list[bytes]) -> torch.Tensor:
        """The reconstruction (3, H, W) on 8-bit levels, identical to the encoder's."""
        size = padded_size(self.height, self.width)
        planes = None
        if frame_type == INTRA and self.hevc is not None:
            if len(streams) != 1:
                raise ValueError(f"an HEVC I-frame has 1 stream, got {len(streams)}")
            planes = self.hevc.decode(streams[0])
            x_hat, flow_hat = self._hevc_reconstruction(planes), None
        elif frame_type == INTRA:
            x_hat = self.model.decompress_intra(streams, size, self.rates.intra)
            flow_hat = None
        elif frame_type == INTER:
            if self.refs is None:
                raise ValueError("a P-frame before any I-frame")
            x_hat, flow_hat = self.model.decompress_inter(streams, self.refs, self.rates)
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


# A model already in memory: its networks and its 8-byte id, as
# :func:`~canfvc_codec.weights.load_model` returns them. The encoder and the decoder prepare the
# networks they are given in place (numeric type, device), so each run gets its own copy.
LoadedModel = tuple[VideoModel, bytes]


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
    numerics: Numerics
    _model: VideoModel
    _search: FlowEstimator | None
    _device: torch.device
    _hevc: HevcIntra | None
    _tools: EncoderTools | None = None

    def encoder(self) -> Encoder:
        """A fresh encoder (no references, the intra schedule at its start). Every encoder of
        the setup shares its networks, its float32 copy and its motion search, made once
        (:func:`~canfvc_codec.encoder.gop.encoder_tools`)."""
        if self._tools is None:
            self._tools = encoder_tools(
                self._model, self.options, self._search, self._device, self.numerics
            )
        return Encoder.for_stream(
            self._model,
            self.header,
            self.options,
            self._tools,
            self._device,
            self.numerics,
            self._hevc,
        )


def prepare_encode(
    options: EncodeOptions,
    info: VideoInfo,
    *,
    warnings: bool = True,
    loaded: LoadedModel | None = None,
) -> EncodeSetup:
    """Check ``options``, load the model and make the header; ``warnings``: tell the user about
    λ outside the model's trained range (once per encode, not once per worker). ``loaded``: the
    model ``options.model`` names, already loaded (not loaded again)."""
    check_options(options)
    search = motion_search(options.motion_search)
    # Before any work: a missing ffmpeg or libx265 is one error line, and nothing is written.
    intra_qp = qp_for_lambda(options.lmbda) if options.intra_coder == HEVC else None
    hevc = HevcIntra(info, intra_qp) if intra_qp is not None else None
    device = resolve_device(options.device)
    numerics = options.numerics
    model, model_id = loaded if loaded is not None else load_model(options.model, "cpu")
    if warnings:
        warn_untrained_lambdas(options, model.config.anchor_lambdas)
    check_memory(model.config, info.width, info.height, numerics.dtype, task="encode")
    header = StreamHeader.for_video(
        info,
        model_id=model_id,
        gop=options.gop,
        rates=stream_rates(options, model.config.anchor_lambdas),
        intra_coder=options.intra_coder,
    )
    return EncodeSetup(
        options, info, header, model_id, intra_qp, numerics, model, search, device, hevc
    )


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
        "lambda": header.rates.lmbda,
        "motion_lambda": header.rates.motion,
        "intra_lambda": header.rates.intra,
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
    loaded: LoadedModel | None = None,
) -> dict:
    """Encode every frame of ``reader`` into ``output``; ``recon`` gets the reconstruction;
    ``loaded``: the model, already loaded (:func:`prepare_encode`).

    Returns a summary: frames, I-frames, bytes of the whole stream (headers included), bpp over
    the unpadded pixels, the bitrate at the video's frame rate, mean PSNR-RGB, frames per second
    of wall time (model loading included) and one entry per frame (type, record bytes, psnr);
    with HEVC intra, the I-frames' QP.
    """
    started = time.perf_counter()
    info = reader.info
    setup = prepare_encode(options, info, loaded=loaded)
    writer = CvcWriter(output, setup.header)
    encoder = setup.encoder()
    frames: list[dict] = []
    with setup.numerics.switches(), progress_bar(info.frame_count, progress, "encode") as bar:
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
    numerics: Numerics
    _model: VideoModel
    _device: torch.device
    _hevc: HevcIntra | None

    def decoder(self) -> Decoder:
        """A fresh decoder, which starts at an I-frame."""
        return Decoder.for_stream(self._model, self.header, self._device, self.numerics, self._hevc)


def prepare_decode(
    header: StreamHeader,
    device: str,
    model: str | None,
    numerics: Numerics = DEFAULT_NUMERICS,
    *,
    loaded: LoadedModel | None = None,
) -> DecodeSetup:
    """Load the networks ``header`` names (or ``model``, which must be that one) and check that
    this machine can decode the stream. ``loaded``: the model ``model`` names, already loaded."""
    torch_device = resolve_device(device)
    hevc = HevcIntra(header.video_info) if header.intra_coder == HEVC else None
    if model is None:
        network, model_id = load_model_by_id(header.model_id, "cpu")
    else:
        network, model_id = loaded if loaded is not None else load_model(model, "cpu")
        if model_id != header.model_id:
            raise ModelError(
                f"the file was encoded with model {header.model_id.hex()}, "
                f"but {model!r} is model {model_id.hex()}"
            )
    check_memory(network.config, header.width, header.height, numerics.dtype)
    return DecodeSetup(header, numerics, network, torch_device, hevc)


def check_range(header: StreamHeader, start: int) -> None:
    """The checks of a decode's header before anything loads: ``start`` within the stream, and
    a frame size 4:2:0 video can have."""
    if header.frame_count and start >= header.frame_count:
        raise UsageError(past_the_end(start, header.frame_count))
    if header.width % 2 or header.height % 2:
        # The container allows any size; 4:2:0 video (all canfvc codes) needs even ones.
        raise BitstreamError(f"header: frame size {header.width}x{header.height} is not even")


def output_info(header: StreamHeader, start: int, frames: int | None) -> VideoInfo:
    """The video a decode from ``start`` of ``frames`` frames writes."""
    info = header.video_info
    if header.frame_count:
        remaining = header.frame_count - start
        info = replace(info, frame_count=min(remaining, frames or remaining))
    return info


def decode_video(
    source: BinaryIO | CvcReader,
    open_output: Callable[[VideoInfo], VideoWriter],
    *,
    device: str = "auto",
    model: str | None = None,
    progress: bool = True,
    numerics: Numerics = DEFAULT_NUMERICS,
    start: int = 0,
    frames: int | None = None,
    started: float | None = None,
) -> dict:
    """Decode a .cvc stream into the writer ``open_output(info)`` returns.

    ``source`` is the stream, or a :class:`CvcReader` that has read its header already.
    Without ``model`` the header's model id is looked up in ``models/``; HEVC intra I-frames
    need ffmpeg's HEVC decoder, checked before anything is written. Every frame's
    reconstruction is checked against the CRC the encoder stored. ``start`` and ``frames`` pick
    the frames written: decoding begins at the last I-frame at or before ``start`` (an I-frame
    resets the references), and the records after the range are not read. ``numerics`` says how
    the networks compute.
    ``started``: when the decode began (perf_counter), for the summary's frame rate.
    """
    started = time.perf_counter() if started is None else started
    reader = source if isinstance(source, CvcReader) else CvcReader(source)
    header = reader.header
    check_range(header, start)
    setup = prepare_decode(header, device, model, numerics)
    info = output_info(header, start, frames)
    decoder = setup.decoder()

    count = lead_in_frames = 0
    with (
        setup.numerics.switches(),
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
        "lambda": header.rates.lmbda,
    }
