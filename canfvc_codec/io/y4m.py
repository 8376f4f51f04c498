"""YUV4MPEG2 (``.y4m``): the header-carrying raw format that ffmpeg pipes speak.

A stream is one header line, ``YUV4MPEG2 W<w> H<h> F<n>:<d> I<i> A<n>:<d> C<c> X<...>``, then per
frame a line starting ``FRAME`` and the raw planes. canfvc reads the 4:2:0 colour spaces
(``C420jpeg``, ``C420mpeg2``, ``C420paldv``, ``C420`` and ``C420p10``) and the
``XCOLORRANGE=FULL|LIMITED`` extension that ffmpeg writes; other ``X`` fields are ignored.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from canfvc_codec.errors import InputError, UsageError, warn
from canfvc_codec.io.base import VideoReader, VideoWriter
from canfvc_codec.io.frame import (
    DEFAULT_FPS,
    DEFAULT_MATRIX,
    Frame,
    VideoInfo,
    check_geometry,
    frame_from_buffer,
    frame_to_bytes,
)
from canfvc_codec.io.output import STDIO_NAME, AtomicOutput, StdoutSink

SIGNATURE = b"YUV4MPEG2"
FRAME_TAG = b"FRAME"
# A real header is well under 100 bytes; a longer first line means the input is not Y4M.
MAX_HEADER_LINE = 1024
# 4:2:0 colour-space tags and their bit depths. Siting variants share one layout.
CHROMA_TAGS = {"420jpeg": 8, "420mpeg2": 8, "420paldv": 8, "420": 8, "420p10": 10}
DEFAULT_CHROMA_TAG = "420jpeg"
COLOR_RANGE_KEY = "COLORRANGE"
COLOR_RANGES = {"FULL": True, "LIMITED": False}
INTERLACE_MODES = "ptbm?"
INTERLACED_MODES = "tbm"  # top field first, bottom field first, mixed


def _ratio(value: str, field: str, source: str) -> Fraction | None:
    """``n:d`` as a Fraction; ``0:0`` (unknown) as None."""
    num, sep, den = value.partition(":")
    if not sep or not num.isdigit() or not den.isdigit():
        raise InputError(f"{source}: bad Y4M header: {field}{value} is not of the form n:d")
    if int(num) == 0 and int(den) == 0:
        return None
    if int(num) == 0 or int(den) == 0:
        raise InputError(f"{source}: bad Y4M header: {field}{value}")
    return Fraction(int(num), int(den))


def parse_header(line: bytes, source: str) -> tuple[VideoInfo, Fraction | None]:
    """Parse a Y4M header line; returns the video info and the pixel aspect ratio (A, if known)."""
    if not line.startswith(SIGNATURE + b" ") or not line.endswith(b"\n"):
        raise InputError(f"{source}: not a Y4M stream (the header must start with 'YUV4MPEG2 ')")
    try:
        fields = line[len(SIGNATURE) :].decode("ascii").split()
    except UnicodeDecodeError:
        raise InputError(f"{source}: bad Y4M header: not ASCII text") from None
    width = height = None
    fps: Fraction | None = DEFAULT_FPS
    sar = None
    chroma = DEFAULT_CHROMA_TAG
    full_range = False
    for field in fields:
        key, value = field[0], field[1:]
        if key in "WH":
            if not value.isdigit():
                raise InputError(f"{source}: bad Y4M header: {field}")
            if key == "W":
                width = int(value)
            else:
                height = int(value)
        elif key == "F":
            fps = _ratio(value, key, source) or DEFAULT_FPS
        elif key == "A":
            sar = _ratio(value, key, source)
        elif key == "I":
            if value not in tuple(INTERLACE_MODES):
                raise InputError(f"{source}: bad Y4M header: {field}")
            if value in INTERLACED_MODES:
                warn(
                    f"{source}: interlaced video (I{value}) is coded as progressive frames, "
                    "both fields together (deinterlace it first, e.g. ffmpeg -vf bwdif)"
                )
        elif key == "C":
            chroma = value
        elif key == "X":
            name, _, setting = value.partition("=")
            if name == COLOR_RANGE_KEY:
                if setting not in COLOR_RANGES:
                    raise InputError(f"{source}: bad Y4M header: {field}")
                full_range = COLOR_RANGES[setting]
        # Unknown fields are ignored, as the format asks of readers.
    if width is None or height is None:
        raise InputError(f"{source}: bad Y4M header: width (W) or height (H) missing")
    check_geometry(width, height, source)
    if chroma not in CHROMA_TAGS:
        raise InputError(
            f"{source}: unsupported pixel format C{chroma} (canfvc reads 4:2:0 video, 8 or 10 bit)"
        )
    info = VideoInfo(
        width=width,
        height=height,
        fps_num=fps.numerator,
        fps_den=fps.denominator,
        bit_depth=CHROMA_TAGS[chroma],
        matrix=DEFAULT_MATRIX,
        full_range=full_range,
        frame_count=None,
    )
    return info, sar


def format_header(info: VideoInfo) -> bytes:
    """The header line canfvc writes (square pixels, progressive)."""
    chroma = "420p10 XYSCSS=420P10" if info.bit_depth == 10 else DEFAULT_CHROMA_TAG
    color_range = "FULL" if info.full_range else "LIMITED"
    return (
        f"YUV4MPEG2 W{info.width} H{info.height} F{info.fps_num}:{info.fps_den} Ip A1:1 "
        f"C{chroma} X{COLOR_RANGE_KEY}={color_range}\n"
    ).encode("ascii")


class Y4MReader(VideoReader):
    """Y4M from a file or a pipe; ``--fps``, ``--matrix`` and range flags override the header."""

    format_name = "y4m"

    def __init__(
        self,
        stream: BinaryIO,
        name: str,
        *,
        fps: Fraction | None = None,
        bit_depth: int | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        start: int = 0,
        frames: int | None = None,
        file_size: int | None = None,
        owns_stream: bool = True,
    ) -> None:
        super().__init__(name, start, frames)
        self._stream = stream
        self._owns_stream = owns_stream
        header = stream.readline(MAX_HEADER_LINE)
        if not header:
            raise InputError(f"{name}: empty input: expected a Y4M stream")
        self.info, self.sar = parse_header(header, name)
        if bit_depth is not None and bit_depth != self.info.bit_depth:
            raise UsageError(
                f"{name}: --bit-depth {bit_depth} does not match the "
                f"{self.info.bit_depth}-bit input"
            )
        if fps is not None:
            self.info.fps_num, self.info.fps_den = fps.numerator, fps.denominator
        if matrix is not None:
            self.info.matrix = matrix
        if full_range is not None:
            self.info.full_range = full_range
        self._frame_index = 0
        self._header_bytes = len(header)
        self._plain_frame_bytes = len(FRAME_TAG) + 1 + self.info.frame_bytes
        self.total_frames = None
        if file_size is not None:
            body = file_size - self._header_bytes
            # Exact only when every frame line is a bare "FRAME"; otherwise the count stays unknown.
            if body % self._plain_frame_bytes == 0:
                self.total_frames = body // self._plain_frame_bytes
                self.info.frame_count = self._selected_count(self.total_frames)

    def _skip(self, count: int) -> int:
        if self.total_frames is None or not self._stream.seekable():
            return super()._skip(count)
        count = min(count, self.total_frames)
        self._stream.seek(self._header_bytes + count * self._plain_frame_bytes)
        self._frame_index = count
        return count

    def _read_frame(self) -> Frame | None:
        line = self._stream.readline(MAX_HEADER_LINE)
        if not line:
            return None
        index = self._frame_index
        if not line.startswith(FRAME_TAG) or not line.endswith(b"\n"):
            raise InputError(f"{self.name}: frame {index}: bad Y4M frame header")
        data = self._stream.read(self.info.frame_bytes)
        if len(data) < self.info.frame_bytes:
            raise InputError(f"{self.name}: frame {index} is truncated")
        self._frame_index += 1
        return frame_from_buffer(data, self.info)

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()


def open_y4m_file(path: Path, **options: object) -> Y4MReader:
    """A Y4M file, or a named pipe read as a stream (its length unknown)."""
    stream = path.open("rb")
    size = path.stat().st_size if path.is_file() else None
    try:
        return Y4MReader(stream, str(path), file_size=size, **options)  # type: ignore[arg-type]
    except BaseException:
        stream.close()
        raise


class Y4MWriter(VideoWriter):
    """Y4M to a file, or to stdout for ``-``."""

    def __init__(self, path: str, info: VideoInfo, *, overwrite: bool = False) -> None:
        super().__init__(info)
        self._out = StdoutSink() if path == STDIO_NAME else AtomicOutput(path, overwrite)
        self._header_written = False

    def _write(self, frame: Frame) -> None:
        if not self._header_written:
            self._out.write(format_header(self.info))
            self._header_written = True
        self._out.write(FRAME_TAG + b"\n" + frame_to_bytes(frame, self.info))

    def _finish(self) -> None:
        if not self._header_written:
            # A valid stream even with no frames: readers learn the format from the header.
            self._out.write(format_header(self.info))
            self._header_written = True
        self._out.commit()

    def _discard(self) -> None:
        self._out.discard()
