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
from dataclasses import replace
from typing import BinaryIO

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
from canfvc_codec.defaults import DEFAULT_NUMERIC_PATH
from canfvc_codec.device import resolve_device
from canfvc_codec.encoder.gop import build_encoder
from canfvc_codec.encoder.motion import motion_search
from canfvc_codec.encoder.options import (
    EncodeOptions,
    auto_motion_lambda,
    check_options,
    warn_untrained_lambdas,
)
from canfvc_codec.engine import Engine
from canfvc_codec.errors import BitstreamError, InputError, ModelError, UsageError
from canfvc_codec.hevc import HEVC, HevcIntra, qp_for_lambda
from canfvc_codec.io import VideoInfo, VideoReader, VideoWriter
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from canfvc_codec.io.frame import Frame
from canfvc_codec.memory import check_memory
from canfvc_codec.networks.video import PEAK_8BIT, padded_size
from canfvc_codec.numerics import DECODER_DTYPE_NAME, Numerics, resolve_tie
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


def _progress(total: int | None, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, file=sys.stderr, disable=not enabled, unit="frame", desc=desc)


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
    check_options(options)
    search = motion_search(options.motion_search)
    info = reader.info
    # Before any work: a missing ffmpeg or libx265 is one error line, and nothing is written.
    intra_qp = qp_for_lambda(options.lmbda) if options.intra_coder == HEVC else None
    hevc = HevcIntra(info, intra_qp) if intra_qp is not None else None
    device = resolve_device(options.device)
    numerics = Numerics.from_options(options.dtype, options.numeric_path)
    model, model_id = load_model(options.model, "cpu")
    warn_untrained_lambdas(options, model.config.anchor_lambdas)
    check_memory(model.config, info.width, info.height, numerics.dtype, task="encode")
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
    writer = CvcWriter(output, header)
    encoder = build_encoder(model, options, header, search, device, numerics, hevc)
    frames: list[dict] = []
    with numerics.switches(), _progress(info.frame_count, progress, "encode") as bar:
        for frame in reader:
            rgb = yuv_to_rgb(frame, info, device)
            frame_type, streams, rgb_hat = encoder.encode(rgb, frame)
            decoded = encoder.output_planes(rgb_hat, info)
            size = writer.write_frame(FrameRecord(frame_type, streams, frame_crc(decoded)))
            if recon is not None:
                recon.write(decoded)
            quality = psnr(rgb, rgb_hat.to(rgb.dtype))
            frames.append({"type": frame_type, "bytes": size, "psnr": quality})
            bar.set_postfix_str(f"{frame_type} {size} B {quality:.2f} dB", refresh=False)
            bar.update()
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
        **({"intra_qp": intra_qp} if intra_qp is not None else {}),
        "model_id": model_id.hex(),
        "per_frame": frames,
    }


def _matches_crc(info: VideoInfo, crc: int) -> Callable[[torch.Tensor], bool]:
    """Whether an RGB reconstruction, written as the video's YUV, has the CRC ``crc``."""
    return lambda rgb: frame_crc(rgb_to_yuv(rgb, info)) == crc


def _records_from(
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


def _decode_checked(decoder: Decoder, info: VideoInfo, index: int, record: FrameRecord) -> Frame:
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


def _past_the_end(start: int, frame_count: int) -> str:
    return f"--start {start} is past the end ({frame_count} frames)"


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
    numeric_path: str = DEFAULT_NUMERIC_PATH,
) -> dict:
    """Decode a .cvc stream into the writer ``open_output(info)`` returns.

    Without ``model`` the header's model id is looked up in ``models/``; HEVC intra I-frames
    need ffmpeg's HEVC decoder, checked before anything is written. Every frame's
    reconstruction is checked against the CRC the encoder stored. ``start`` and ``frames`` pick
    the frames written: decoding begins at the last I-frame at or before ``start`` (an I-frame
    resets the references), and the records after the range are not read. ``dtype`` and
    ``numeric_path`` say how the networks compute (:class:`~canfvc_codec.numerics.Numerics`).
    """
    started = time.perf_counter()
    reader = CvcReader(source)
    header = reader.header
    if header.frame_count and start >= header.frame_count:
        raise UsageError(_past_the_end(start, header.frame_count))
    if header.width % 2 or header.height % 2:
        # The container allows any size; 4:2:0 video (all canfvc codes) needs even ones.
        raise BitstreamError(f"header: frame size {header.width}x{header.height} is not even")
    torch_device = resolve_device(device)
    numerics = Numerics.from_options(dtype, numeric_path)
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
    info = header.video_info
    if header.frame_count:
        remaining = header.frame_count - start
        info = replace(info, frame_count=min(remaining, frames or remaining))
    check_memory(network.config, header.width, header.height, numerics.dtype)
    decoder = Decoder(
        network,
        header.lmbda,
        header.width,
        header.height,
        torch_device,
        numerics,
        header.motion_lmbda,
        hevc,
    )

    count = lead_in_frames = 0
    with (
        numerics.switches(),
        open_output(info) as writer,
        _progress(info.frame_count, progress, "decode") as bar,
    ):
        for index, record, shown in _records_from(reader, start):
            decoded = _decode_checked(decoder, info, index, record)
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
            raise UsageError(_past_the_end(start, reader.frames_read))  # inside: nothing written
    return {
        "frames": count,
        "lead_in_frames": lead_in_frames,
        "fps": (count + lead_in_frames) / (time.perf_counter() - started),
        "width": header.width,
        "height": header.height,
        "lambda": header.lmbda,
    }
