"""Opening videos by name: the reader or writer is chosen from the path.

Inputs: ``-`` (Y4M on stdin), ``.yuv``/``.raw`` (raw 4:2:0), ``.y4m``, anything else through ffmpeg.
Outputs: ``-`` (Y4M on stdout), ``.yuv``, ``.y4m``, ``.mp4``/``.mkv`` (lossless H.264, or playable),
``name_%04d.png``.
"""

from __future__ import annotations

import stat
import sys
from fractions import Fraction
from pathlib import Path

from canfvc_codec.errors import InputError, OutputError
from canfvc_codec.io.base import VideoReader, VideoWriter
from canfvc_codec.io.ffmpeg import LOSSLESS_ENCODERS, FFmpegReader, FFmpegWriter
from canfvc_codec.io.ffmpeg import path_exists_or_pattern as _ffmpeg_can_open
from canfvc_codec.io.frame import MATRICES, SUPPORTED_BIT_DEPTHS, VideoInfo, check_geometry
from canfvc_codec.io.output import STDIO_NAME, check_output_path, is_stream_target
from canfvc_codec.io.png import PngSequenceWriter, check_png_pattern, is_png_pattern
from canfvc_codec.io.y4m import Y4MReader, Y4MWriter, open_y4m_file
from canfvc_codec.io.yuv import RAW_EXTENSIONS, RawReader, RawWriter

Y4M_EXTENSION = ".y4m"
H264_EXTENSIONS = tuple(LOSSLESS_ENCODERS)
OUTPUT_FORMATS = ".yuv, .y4m, .mp4, .mkv, a PNG pattern such as rec_%04d.png, or - (Y4M on stdout)"


def _check_options(bit_depth: int | None, matrix: str | None) -> None:
    if bit_depth is not None and bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise InputError(f"unsupported bit depth {bit_depth} (8 or 10 are supported)")
    if matrix is not None and matrix not in MATRICES:
        raise InputError(f"unknown colour matrix {matrix!r} ({' or '.join(MATRICES)})")


def open_reader(
    path: str,
    *,
    size: tuple[int, int] | None = None,
    fps: Fraction | None = None,
    bit_depth: int | None = None,
    matrix: str | None = None,
    full_range: bool | None = None,
    start: int = 0,
    frames: int | None = None,
) -> VideoReader:
    """A streaming reader for ``path``; see the module docstring for the formats.

    The options fill in what the input does not say (raw files) or override what it says
    (frame rate, matrix, range). ``size`` is only for raw input.
    """
    _check_options(bit_depth, matrix)
    common = dict(fps=fps, bit_depth=bit_depth, matrix=matrix, full_range=full_range)
    selection = dict(start=start, frames=frames)
    path = str(path)
    if path == STDIO_NAME:
        if sys.stdin is None:  # started without stdin (<&-)
            raise InputError("stdin is closed: pipe a video in or name an input file")
        if sys.stdin.isatty():
            raise InputError(
                "stdin: no input piped in (e.g. ffmpeg -i clip.mp4 -f yuv4mpegpipe - | canfvc ...)"
            )
        reader: VideoReader = Y4MReader(
            sys.stdin.buffer, "stdin", owns_stream=False, **common, **selection
        )
    else:
        suffix = Path(path).suffix.lower()
        if suffix in RAW_EXTENSIONS or suffix == Y4M_EXTENSION:
            file = Path(path)
            try:
                mode = file.stat().st_mode
            except FileNotFoundError:
                raise InputError(f"{path}: no such file") from None
            except OSError as err:
                raise InputError(f"{path}: cannot read: {err.strerror}") from None
            piped = stat.S_ISFIFO(mode)
            if piped and suffix != Y4M_EXTENSION:
                raise InputError(f"{path}: a named pipe must carry Y4M (raw 4:2:0 needs a file)")
            if not stat.S_ISREG(mode) and not piped:
                raise InputError(f"{path}: not a regular file")
            if suffix == Y4M_EXTENSION:
                reader = open_y4m_file(file, **common, **selection)
            else:
                reader = RawReader(file, size=size, **common, **selection)
        else:
            if not _ffmpeg_can_open(path):
                raise InputError(f"{path}: no such file")
            if Path(path).is_dir():
                raise InputError(f"{path}: is a directory")
            reader = FFmpegReader(path, **common, **selection)
    if size is not None and not isinstance(reader, RawReader):
        actual = (reader.info.width, reader.info.height)
        if tuple(size) != actual:
            reader.close()
            raise InputError(
                f"{reader.name}: --size {size[0]}x{size[1]} does not match the input's "
                f"{actual[0]}x{actual[1]} (--size is for raw .yuv input)"
            )
    return reader


def open_writer(
    path: str, info: VideoInfo, *, overwrite: bool = False, playable: bool = False
) -> VideoWriter:
    """A streaming writer chosen by ``path``'s extension; the file appears when complete.

    ``playable``: .mp4/.mkv as H.264 that players decode, near-lossless, instead of lossless
    (:mod:`canfvc_codec.io.ffmpeg`); for the other formats it changes nothing."""
    check_geometry(info.width, info.height, str(path))
    _check_options(info.bit_depth, info.matrix)
    path = str(path)
    suffix = Path(path).suffix.lower()
    if path == STDIO_NAME or suffix == Y4M_EXTENSION or _unnamed_stream(path):
        return Y4MWriter(path, info, overwrite=overwrite)
    if suffix in RAW_EXTENSIONS:
        return RawWriter(path, info, overwrite=overwrite)
    if suffix in LOSSLESS_ENCODERS:
        return FFmpegWriter(path, info, overwrite=overwrite, playable=playable)
    if is_png_pattern(path):
        return PngSequenceWriter(path, info, overwrite=overwrite)
    check_video_output(path, overwrite)  # raises: says why the name is not a known format
    raise AssertionError(f"no writer for {path}")


def _unnamed_stream(path: str) -> bool:
    """A device or named pipe whose name says no format (``/dev/null``): it gets Y4M, as stdout
    does."""
    return Path(path).suffix == "" and is_stream_target(Path(path))


def check_video_output(path: str, overwrite: bool) -> None:
    """Fail early when ``open_writer(path, ...)`` would fail on its name alone."""
    path = str(path)
    if path == STDIO_NAME or _unnamed_stream(path):
        return
    suffix = Path(path).suffix.lower()
    if is_png_pattern(path):
        check_png_pattern(path, overwrite)
        return
    if suffix == ".png":
        raise OutputError(f"{path}: PNG output needs a frame-number pattern, e.g. rec_%04d.png")
    if (
        suffix not in (Y4M_EXTENSION, *RAW_EXTENSIONS, *LOSSLESS_ENCODERS)
        and not Path(path).is_dir()
    ):
        raise OutputError(f"{path}: unsupported output format (use {OUTPUT_FORMATS})")
    check_output_path(path, overwrite)  # a folder is refused here, as a folder
