"""Raw planar YUV 4:2:0 files: ``yuv420p`` (8-bit) and ``yuv420p10le`` (10-bit).

A raw file has no header, so its size and frame rate come from the command line or from the file
name, as the test-sequence world names its clips: ``name_1920x1080_50.yuv``,
``name_1920x1080_50fps_10bit_420.yuv``, ``foreman_cif_30.yuv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from canfvc_codec.errors import InputError, UsageError
from canfvc_codec.io.base import VideoReader, VideoWriter
from canfvc_codec.io.frame import (
    DEFAULT_FPS,
    DEFAULT_MATRIX,
    Frame,
    VideoInfo,
    check_bit_depth,
    check_geometry,
    frame_from_buffer,
    frame_to_bytes,
    parse_fps,
)
from canfvc_codec.io.output import AtomicOutput

RAW_EXTENSIONS = (".yuv", ".raw")
DEFAULT_BIT_DEPTH = 8

# Names of the classic test-sequence sizes, as they appear in file names.
NAMED_SIZES = {
    "sqcif": (128, 96),
    "qcif": (176, 144),
    "cif": (352, 288),
    "4cif": (704, 576),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2160p": (3840, 2160),
}
_SIZE = re.compile(r"(?<![0-9a-z])(\d{1,5})x(\d{1,5})(?![0-9])", re.IGNORECASE)
_FPS_TAGGED = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)(?:fps|hz)(?![a-z])", re.IGNORECASE)
_FPS_AFTER_SIZE = re.compile(r"^p?[_-](\d+(?:\.\d+)?)(?:fps|hz)?(?=[_.-]|$)", re.IGNORECASE)
_BIT_DEPTH = re.compile(
    r"(?<![0-9])(8|10)[_-]?bits?(?![a-z])|p(10)(?:le)?(?![0-9a-z])", re.IGNORECASE
)


@dataclass
class NameHints:
    """What a raw file's name says about it (None where it says nothing)."""

    size: tuple[int, int] | None = None
    fps: Fraction | None = None
    bit_depth: int | None = None


def parse_raw_name(name: str) -> NameHints:
    """Read size, frame rate and bit depth from a raw file's name."""
    stem = Path(name).stem
    hints = NameHints()
    size_end = None
    match = _SIZE.search(stem)
    if match:
        hints.size = (int(match.group(1)), int(match.group(2)))
        size_end = match.end()
    else:
        for token in re.split(r"[_.-]", stem.lower()):
            if token in NAMED_SIZES:
                hints.size = NAMED_SIZES[token]
                size_end = stem.lower().find(token) + len(token)
                break
    fps_text = None
    tagged = _FPS_TAGGED.search(stem)
    if tagged:
        fps_text = tagged.group(1)
    elif size_end is not None:
        after = _FPS_AFTER_SIZE.match(stem[size_end:])
        if after:
            fps_text = after.group(1)
    if fps_text is not None:
        try:
            hints.fps = parse_fps(fps_text)
        except ValueError:
            hints.fps = None
    depth = _BIT_DEPTH.search(stem)
    if depth:
        hints.bit_depth = int(depth.group(1) or depth.group(2))
    return hints


class RawReader(VideoReader):
    """A raw 4:2:0 file, read frame by frame with seeks for ``--start``."""

    format_name = "raw"

    def __init__(
        self,
        path: Path,
        *,
        size: tuple[int, int] | None = None,
        fps: Fraction | None = None,
        bit_depth: int | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        start: int = 0,
        frames: int | None = None,
    ) -> None:
        super().__init__(str(path), start, frames)
        hints = parse_raw_name(path.name)
        size = size or hints.size
        if size is None:
            raise UsageError(
                f"{path}: unknown frame size: give --size WxH or name the file like "
                "clip_1920x1080_50.yuv"
            )
        width, height = size
        check_geometry(width, height, str(path))
        bit_depth = bit_depth or hints.bit_depth or DEFAULT_BIT_DEPTH
        check_bit_depth(bit_depth, str(path))
        rate = fps or hints.fps or DEFAULT_FPS
        self.info = VideoInfo(
            width=width,
            height=height,
            fps_num=rate.numerator,
            fps_den=rate.denominator,
            bit_depth=bit_depth,
            matrix=matrix or DEFAULT_MATRIX,
            full_range=bool(full_range),
            frame_count=None,
        )
        frame_bytes = self.info.frame_bytes
        file_bytes = path.stat().st_size
        if file_bytes == 0:
            raise InputError(f"{path}: the file is empty")
        if file_bytes % frame_bytes:
            raise InputError(
                f"{path}: {file_bytes} bytes is not a whole number of {width}x{height} "
                f"{bit_depth}-bit 4:2:0 frames ({frame_bytes} bytes each); check --size/--bit-depth"
            )
        self.total_frames = file_bytes // frame_bytes
        self.info.frame_count = self._selected_count(self.total_frames)
        self._file = path.open("rb")

    def _skip(self, count: int) -> int:
        count = min(count, self.total_frames)
        self._file.seek(count * self.info.frame_bytes)
        return count

    def _read_frame(self) -> Frame | None:
        data = self._file.read(self.info.frame_bytes)
        if not data:
            return None
        if len(data) < self.info.frame_bytes:
            raise InputError(f"{self.name}: the file was truncated while reading")
        return frame_from_buffer(data, self.info)

    def close(self) -> None:
        self._file.close()


class RawWriter(VideoWriter):
    """Writes planar Y, U, V (10-bit samples as little-endian 16-bit words)."""

    def __init__(self, path: str, info: VideoInfo, *, overwrite: bool = False) -> None:
        super().__init__(info)
        self._out = AtomicOutput(path, overwrite)

    def _write(self, frame: Frame) -> None:
        self._out.write(frame_to_bytes(frame, self.info))

    def _finish(self) -> None:
        self._out.commit()

    def _discard(self) -> None:
        self._out.discard()
