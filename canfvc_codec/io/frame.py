"""The two records every reader and writer speaks: :class:`VideoInfo` and :class:`Frame`.

Frames outside the codec are planar YUV 4:2:0: ``uint8`` planes for 8-bit video, ``uint16`` planes
(values in the low 10 bits) for 10-bit video.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from canfvc_codec.errors import InputError

SUPPORTED_BIT_DEPTHS = (8, 10)
MATRICES = ("bt709", "bt601")
DEFAULT_MATRIX = "bt709"
DEFAULT_FPS = Fraction(30)
# 4:2:0 halves both chroma dimensions, so the picture needs even width and height.
CHROMA_SUBSAMPLING = 2
# Frames beyond this many pixels per side are surely a misread header, not a real video.
MAX_DIMENSION = 16384


@dataclass
class VideoInfo:
    """What a reader knows about a video and a writer needs to write one."""

    width: int
    height: int
    fps_num: int
    fps_den: int
    bit_depth: int  # 8 or 10
    matrix: str  # "bt709" | "bt601"
    full_range: bool
    frame_count: int | None  # None when unknown (pipes, ffmpeg inputs)

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    @property
    def dtype(self) -> type[np.generic]:
        return dtype_for(self.bit_depth)

    @property
    def chroma_size(self) -> tuple[int, int]:
        """(width, height) of each chroma plane."""
        return self.width // CHROMA_SUBSAMPLING, self.height // CHROMA_SUBSAMPLING

    @property
    def frame_bytes(self) -> int:
        """Bytes of one raw 4:2:0 frame (10-bit samples take two bytes)."""
        cw, ch = self.chroma_size
        sample_bytes = np.dtype(self.dtype).itemsize
        return (self.width * self.height + 2 * cw * ch) * sample_bytes


@dataclass
class Frame:
    """One YUV 4:2:0 picture: full-size luma, half-size chroma planes."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


def dtype_for(bit_depth: int) -> type[np.generic]:
    return np.uint8 if bit_depth == 8 else np.uint16


def check_geometry(width: int, height: int, source: str) -> None:
    """Reject sizes that 4:2:0 cannot represent or that no real video has."""
    if width <= 0 or height <= 0 or width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise InputError(f"{source}: invalid frame size {width}x{height}")
    if width % CHROMA_SUBSAMPLING or height % CHROMA_SUBSAMPLING:
        raise InputError(
            f"{source}: odd dimensions {width}x{height} are not supported (4:2:0 needs even sizes)"
        )


def check_bit_depth(bit_depth: int, source: str) -> None:
    if bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise InputError(f"{source}: unsupported bit depth {bit_depth} (8 or 10 are supported)")


def frame_from_buffer(data: bytes | bytearray | memoryview, info: VideoInfo) -> Frame:
    """Split one raw frame's bytes into planes (10-bit samples are little-endian)."""
    dtype = np.dtype(info.dtype).newbyteorder("<")
    samples = np.frombuffer(data, dtype=dtype)
    luma = info.width * info.height
    cw, ch = info.chroma_size
    chroma = cw * ch
    y = samples[:luma].reshape(info.height, info.width)
    u = samples[luma : luma + chroma].reshape(ch, cw)
    v = samples[luma + chroma : luma + 2 * chroma].reshape(ch, cw)
    native = np.dtype(info.dtype)
    return Frame(y.astype(native), u.astype(native), v.astype(native))


def frame_to_bytes(frame: Frame, info: VideoInfo) -> bytes:
    """The raw bytes of one frame: Y, U, V planes, 10-bit samples little-endian."""
    check_frame(frame, info)
    dtype = np.dtype(info.dtype).newbyteorder("<")
    return b"".join(
        np.ascontiguousarray(p, dtype=dtype).tobytes() for p in (frame.y, frame.u, frame.v)
    )


def check_frame(frame: Frame, info: VideoInfo) -> None:
    """A frame handed to a writer must match the video it declared (a programming error if not)."""
    cw, ch = info.chroma_size
    expected = ((info.height, info.width), (ch, cw), (ch, cw))
    shapes = (frame.y.shape, frame.u.shape, frame.v.shape)
    if shapes != expected:
        raise ValueError(f"frame planes {shapes} do not match the video's {expected}")


# Frame rates written with decimals that stand for the NTSC family n*1000/1001 (29.97, 59.94, ...).
NTSC_DENOMINATOR = 1001
NTSC_TOLERANCE = 0.005
MAX_FPS = 1000


def parse_fps(text: str) -> Fraction:
    """A frame rate from ``30``, ``29.97`` (read as 30000/1001) or ``30000/1001``."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"invalid frame rate {text!r}") from None
    if not 0 < value <= MAX_FPS:
        raise ValueError(f"frame rate {text} is out of range")
    if value.denominator != 1 and "/" not in text:
        ntsc = value * NTSC_DENOMINATOR / 1000
        nearest = round(ntsc)
        if abs(ntsc - nearest) < NTSC_TOLERANCE:
            return Fraction(nearest * 1000, NTSC_DENOMINATOR)
        return value.limit_denominator(NTSC_DENOMINATOR)
    return value


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` as (width, height)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"invalid size {text!r}; expected WxH, e.g. 1920x1080")
    return int(parts[0]), int(parts[1])
