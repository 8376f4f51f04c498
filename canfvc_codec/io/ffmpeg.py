"""Everything ffmpeg reads (mp4, mkv, ...) in, lossless mp4/mkv out, through ffmpeg-python.

Input is decoded by ffmpeg to a Y4M pipe and parsed by :mod:`canfvc_codec.io.y4m`, so only one
frame at a time is in memory. The ffmpeg binary is the one on PATH, else the one that the
``imageio-ffmpeg`` wheel ships, so that ``pip install`` alone is enough.

Lossless output: ``.mp4`` and ``.mkv`` hold H.264 from libx264 at ``-qp 0`` in yuv420p or
yuv420p10le, x264's lossless mode: the decoded planes equal the input planes bit for bit. 4:2:0,
the bit depth, the range and the matrix are kept (FFV1 was not used: this ffmpeg rescales
full-range input for it). Lossless H.264 is the High 4:4:4 Predictive profile, which browsers and
hardware players do not decode; ``playable`` output is the High profile in 8-bit 4:2:0 at a
near-lossless CRF instead, which they do (not bit-exact; 10-bit video is rounded to 8 bits).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import IO

import ffmpeg as ffmpeg_lib

from canfvc_codec.errors import InputError, OutputError
from canfvc_codec.io.base import VideoWriter
from canfvc_codec.io.frame import Frame, VideoInfo, frame_to_bytes
from canfvc_codec.io.output import AtomicOutput, is_broken_pipe
from canfvc_codec.io.y4m import Y4MReader

QUIET_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error")
PIX_FMT = {8: "yuv420p", 10: "yuv420p10le"}
# Pixel formats that reach the Y4M pipe unchanged (no swscale conversion at all).
PASSTHROUGH_PIX_FMTS = {"yuv420p": 8, "yuvj420p": 8, "yuv420p10le": 10}
# ffmpeg's colour-space names for the two matrices canfvc knows.
FFMPEG_COLORSPACE = {"bt709": "bt709", "bt601": "smpte170m"}
BT601_NAMES = {"bt470bg", "smpte170m", "bt601"}
FULL_RANGE_TAG, LIMITED_RANGE_TAG = "pc", "tv"
# ffmpeg's y4m muxer accepts 10-bit 4:2:0 only as a non-standard extension.
Y4M_EXTENSION_ARGS = {"strict": "-1"}
LOSSLESS_ENCODERS = {
    ".mp4": ("mp4", {"vcodec": "libx264", "qp": 0}),
    ".mkv": ("matroska", {"vcodec": "libx264", "qp": 0}),
}
# H.264 High profile, 8-bit 4:2:0: what browsers and hardware players decode. CRF 12 is well
# below x264's default of 23, near-lossless to the eye; it is lossy all the same.
PLAYABLE_CRF = 12
PLAYABLE_PIX_FMT = "yuv420p"
PLAYABLE_ARGS = {"vcodec": "libx264", "crf": PLAYABLE_CRF, "profile:v": "high"}
MP4_FAST_START = {"movflags": "+faststart"}  # the index first, so that a browser plays at once
STDERR_TAIL_LINES = 3
OPEN_ERROR_PREFIX = "Error opening input"
_STREAM_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_DEPTH = re.compile(r"p(\d+)(?:le|be)?$")


def ffmpeg_exe() -> str:
    """ffmpeg from PATH, else the binary bundled with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError("ffmpeg is needed for this format but was not found on PATH") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(log: IO[bytes]) -> str:
    """The last lines ffmpeg wrote to its log, on one line."""
    log.seek(0)
    lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return " / ".join(lines[-STDERR_TAIL_LINES:]) or "no message"


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description on commas outside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


class ProbeResult:
    """What ffmpeg says about the first video stream: pixel format, matrix, range."""

    def __init__(self, pix_fmt: str, attributes: list[str]) -> None:
        self.pix_fmt = pix_fmt
        depth = _DEPTH.search(pix_fmt)
        self.bit_depth = int(depth.group(1)) if depth else 8
        names = {name for attr in attributes for name in attr.split("/")}
        self.matrix = "bt601" if names & BT601_NAMES else ("bt709" if "bt709" in names else None)
        self.full_range = True if FULL_RANGE_TAG in names or pix_fmt.startswith("yuvj") else None


def probe(path: str) -> ProbeResult:
    """Ask ffmpeg what the input is (imageio-ffmpeg ships no ffprobe, so parse ``ffmpeg -i``)."""
    args = [ffmpeg_exe(), *QUIET_ARGS[:2], "-i", path]
    result = subprocess.run(args, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    log = result.stderr.decode("utf-8", "replace")
    match = _STREAM_LINE.search(log)
    if match is None:
        errors = [line.strip() for line in log.splitlines() if line.strip()]
        reason = errors[-1] if errors else "unknown format"
        if reason.startswith(OPEN_ERROR_PREFIX) and ": " in reason:
            reason = reason.split(": ", 1)[1]  # keep ffmpeg's reason, drop its preamble
        if "Stream #" in log:
            reason = "it has no video stream"
        raise InputError(f"{path}: ffmpeg cannot read it: {reason}")
    fields = _split_top_level(match.group(1))
    pix_field = fields[1] if len(fields) > 1 else ""
    pix_fmt, _, attrs = pix_field.partition("(")
    return ProbeResult(pix_fmt.strip(), [a.strip() for a in attrs.rstrip(")").split(",")])


class FFmpegReader(Y4MReader):
    """Any input ffmpeg can decode, streamed through a Y4M pipe.

    4:2:0 8/10-bit sources pass through untouched; other formats are converted by ffmpeg to
    4:2:0 (BT.709 / BT.601 as asked, limited range unless the source is full range).
    """

    format_name = "ffmpeg"

    def __init__(
        self,
        path: str,
        *,
        fps: Fraction | None = None,
        bit_depth: int | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        start: int = 0,
        frames: int | None = None,
    ) -> None:
        found = probe(path)
        self.source_pix_fmt = found.pix_fmt
        out_kwargs: dict[str, object] = {"format": "yuv4mpegpipe"}
        passthrough_depth = PASSTHROUGH_PIX_FMTS.get(found.pix_fmt)
        if passthrough_depth is not None and bit_depth in (None, passthrough_depth):
            depth = passthrough_depth
        else:
            depth = bit_depth or (10 if found.bit_depth > 8 else 8)
            out_kwargs["pix_fmt"] = PIX_FMT[depth]
            if not found.pix_fmt.startswith("yuv"):
                # RGB and other sources: pin ffmpeg's conversion to canfvc's matrix and range.
                colorspace = FFMPEG_COLORSPACE[matrix or found.matrix or "bt709"]
                target_range = FULL_RANGE_TAG if full_range else LIMITED_RANGE_TAG
                out_kwargs["vf"] = f"scale=out_color_matrix={colorspace}:out_range={target_range}"
        if depth == 10:
            out_kwargs.update(Y4M_EXTENSION_ARGS)
        if frames is not None:
            out_kwargs["frames:v"] = start + frames
        args = (
            ffmpeg_lib.input(path)
            .output("pipe:", **out_kwargs)
            .global_args(*QUIET_ARGS)
            .compile(cmd=ffmpeg_exe())
        )
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
        )
        assert self._process.stdout is not None
        try:
            super().__init__(
                self._process.stdout,
                path,
                fps=fps,
                matrix=matrix or found.matrix,
                full_range=full_range if full_range is not None else found.full_range,
                start=start,
                frames=frames,
            )
        except InputError:
            self._process.wait()
            message = _tail(self._log)
            self.close()
            raise InputError(f"{path}: ffmpeg cannot decode it: {message}") from None
        except BaseException:
            self.close()
            raise

    def _read_frame(self) -> Frame | None:
        frame = super()._read_frame()
        if frame is None and self._process.wait() != 0:
            raise InputError(f"{self.name}: ffmpeg failed while decoding: {_tail(self._log)}")
        return frame

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process.wait()
        self._log.close()


class FFmpegWriter(VideoWriter):
    """.mp4 or .mkv H.264, fed raw frames on ffmpeg's stdin: lossless (x264 -qp 0), or with
    ``playable`` the High profile at ``PLAYABLE_CRF`` (see the module's docstring)."""

    def __init__(
        self, path: str, info: VideoInfo, *, overwrite: bool = False, playable: bool = False
    ) -> None:
        super().__init__(info)
        suffix = Path(path).suffix.lower()
        container, codec_args = LOSSLESS_ENCODERS[suffix]
        self._out = AtomicOutput(path, overwrite, open_file=False)
        pix_fmt = PIX_FMT[info.bit_depth]
        out_pix_fmt = pix_fmt
        if playable:
            out_pix_fmt = PLAYABLE_PIX_FMT
            codec_args = {**PLAYABLE_ARGS, **(MP4_FAST_START if container == "mp4" else {})}
        args = (
            ffmpeg_lib.input(
                "pipe:",
                format="rawvideo",
                pix_fmt=pix_fmt,
                s=f"{info.width}x{info.height}",
                framerate=f"{info.fps_num}/{info.fps_den}",
            )
            .output(
                str(self._out.temp_path),
                format=container,
                pix_fmt=out_pix_fmt,
                # Tag, never convert: output colour options would make ffmpeg rescale the planes.
                vf=f"setparams=range={'pc' if info.full_range else 'tv'}"
                f":colorspace={FFMPEG_COLORSPACE[info.matrix]}",
                **codec_args,
            )
            .overwrite_output()
            .global_args(*QUIET_ARGS)
            .compile(cmd=ffmpeg_exe())
        )
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
            )
        except OSError as err:
            self._out.discard()
            raise OutputError(f"{path}: cannot start ffmpeg: {err.strerror}") from None

    def _write(self, frame: Frame) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(frame_to_bytes(frame, self.info))
        except OSError as err:
            if not is_broken_pipe(err):
                raise
            self.abort()
            raise OutputError(f"{self._out.target}: ffmpeg stopped: {_tail(self._log)}") from None

    def _finish(self) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.close()
        except OSError:
            pass  # ffmpeg already exited; its status below says why
        if self._process.wait() != 0:
            message = _tail(self._log)
            self._log.close()
            self._out.discard()
            raise OutputError(f"{self._out.target}: ffmpeg failed: {message}")
        self._log.close()
        self._out.commit()

    def _discard(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass  # the process is gone; nothing left to flush
        self._process.wait()
        self._log.close()
        self._out.discard()


def path_exists_or_pattern(path: str) -> bool:
    """True when ffmpeg may open ``path``: a file, an image pattern (``%d``) or a URL."""
    return os.path.exists(path) or "%" in path or "://" in path
