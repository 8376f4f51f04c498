"""Conventional anchors through ffmpeg: x265 and x264 veryslow, optionally SVT-AV1.

x265 follows the CANF-VC paper (supplement §9)::

    ffmpeg -pix_fmt yuv420p -s WxH -r FR -i input.yuv -vframes N -c:v libx265 -preset veryslow
           -tune zerolatency -x265-params "qp=Q:keyint=GOP" output

``-tune zerolatency`` gives a low-delay IPPP structure (no B-frames, no look-ahead), the same
prediction structure as canfvc. x264 uses the same settings; SVT-AV1 its low-delay structure in
constant-QP mode. Bitstreams are written as elementary streams (no container) and their SEI NAL
units are removed: x265 and x264 embed their full option string there (about 2 KB and 0.5 KB), bytes
that say nothing about the pictures and would distort bpp at low rates. SEI messages are not needed
for decoding, and the streams are decoded to check exactly that.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from canfvc_codec.errors import CanfvcError, UsageError
from canfvc_codec.eval.process import RunStats, run_measured

# CANF-VC's anchor rates; the paper adds QP 19, which lies beyond the learned codec's top rate.
DEFAULT_QPS = (22, 27, 32, 37)
# SVT-AV1 QPs run 0..63; these give about the same bpp range as the x265 QPs above.
DEFAULT_AV1_QPS = (32, 40, 48, 55)
# SVT-AV1 presets run -2 (slowest) .. 13; 8 keeps a 2-core machine usable while staying sane.
SVTAV1_PRESET = 8
SVTAV1_LOW_DELAY = 1  # pred-struct=1: low-delay, like zerolatency for x26x
# H.264 / HEVC NAL unit types of SEI messages (informational only).
H264_SEI_TYPES = "6"
HEVC_SEI_TYPES = "39|40"


class AnchorError(CanfvcError):
    """An anchor encoder or decoder failed, or ffmpeg lacks it."""


@dataclass(frozen=True)
class Geometry:
    """What ffmpeg must be told about a raw 4:2:0 input."""

    width: int
    height: int
    fps: Fraction
    bit_depth: int
    frames: int

    @property
    def pix_fmt(self) -> str:
        return "yuv420p" if self.bit_depth == 8 else f"yuv420p{self.bit_depth}le"


@dataclass(frozen=True)
class AnchorCodec:
    """One conventional codec as an ffmpeg encoder and an elementary-stream format."""

    name: str
    encoder: str
    stream_format: str
    suffix: str
    sei_types: str | None
    default_qps: tuple[int, ...]
    description: str

    def encoder_args(self, qp: int, gop: int) -> list[str]:
        """Codec options; ``gop`` 0 means only the first frame is intra."""
        if self.name == "x265":
            keyint = gop if gop > 0 else -1
            return [
                "-c:v",
                "libx265",
                "-preset",
                "veryslow",
                "-tune",
                "zerolatency",
                "-x265-params",
                f"qp={qp}:keyint={keyint}:log-level=error",
            ]
        if self.name == "x264":
            keyint = gop if gop > 0 else "infinite"
            return [
                "-c:v",
                "libx264",
                "-preset",
                "veryslow",
                "-tune",
                "zerolatency",
                "-x264-params",
                f"qp={qp}:keyint={keyint}",
            ]
        keyint = gop if gop > 0 else -1
        return [
            "-c:v",
            "libsvtav1",
            "-preset",
            str(SVTAV1_PRESET),
            "-svtav1-params",
            f"rc=0:qp={qp}:keyint={keyint}:pred-struct={SVTAV1_LOW_DELAY}",
        ]


ANCHORS: dict[str, AnchorCodec] = {
    "x265": AnchorCodec(
        "x265",
        "libx265",
        "hevc",
        ".hevc",
        HEVC_SEI_TYPES,
        DEFAULT_QPS,
        "x265 veryslow, zerolatency (low-delay P), paper command line",
    ),
    "x264": AnchorCodec(
        "x264",
        "libx264",
        "h264",
        ".264",
        H264_SEI_TYPES,
        DEFAULT_QPS,
        "x264 veryslow, zerolatency (low-delay P)",
    ),
    "svtav1": AnchorCodec(
        "svtav1",
        "libsvtav1",
        "obu",
        ".obu",
        None,
        DEFAULT_AV1_QPS,
        f"SVT-AV1 preset {SVTAV1_PRESET}, low-delay, constant QP",
    ),
}
REFERENCE_ANCHOR = "x265"


def parse_anchor_names(text: str) -> list[str]:
    """``"x265,x264"`` -> ["x265", "x264"]; empty or "none" -> []."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in ANCHORS]
    if unknown:
        raise UsageError(f"unknown anchor {unknown[0]!r} (choose from {', '.join(ANCHORS)})")
    return list(dict.fromkeys(names))


@functools.lru_cache(maxsize=4)
def _encoders_of(exe: str) -> str:
    stats = run_measured([exe, "-hide_banner", "-encoders"])
    return stats.stdout.decode("utf-8", "replace")


def find_ffmpeg(encoders: tuple[str, ...] = ()) -> str:
    """An ffmpeg with every encoder asked for: the one on PATH, else imageio-ffmpeg's."""
    candidates = []
    on_path = shutil.which("ffmpeg")
    if on_path:
        candidates.append(on_path)
    try:
        import imageio_ffmpeg

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    for exe in candidates:
        listing = _encoders_of(exe)
        if all(f" {enc} " in listing for enc in encoders):
            return exe
    wanted = ", ".join(encoders) or "ffmpeg"
    raise AnchorError(f"no ffmpeg with {wanted} found (install ffmpeg or imageio-ffmpeg)")


def ffmpeg_version(exe: str) -> str:
    first = run_measured([exe, "-version"]).stdout.decode("utf-8", "replace").splitlines()
    return first[0] if first else "unknown"


def _env() -> dict[str, str]:
    # SVT-AV1 prints its banner at info level unless told otherwise.
    return {**os.environ, "SVT_LOG": "1"}


def encode(
    codec: AnchorCodec,
    raw_input: Path,
    geometry: Geometry,
    qp: int,
    gop: int,
    output: Path,
    ffmpeg: str,
) -> RunStats:
    """Encode a raw 4:2:0 file into an elementary stream; raises AnchorError on failure."""
    cmd = [
        ffmpeg,
        "-v",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        geometry.pix_fmt,
        "-s",
        f"{geometry.width}x{geometry.height}",
        "-r",
        str(geometry.fps),
        "-i",
        raw_input,
        "-frames:v",
        str(geometry.frames),
        *codec.encoder_args(qp, gop),
    ]
    if codec.sei_types:
        cmd += ["-bsf:v", f"filter_units=remove_types={codec.sei_types}"]
    cmd += ["-f", codec.stream_format, output]
    stats = run_measured(cmd, env=_env())
    if not stats.ok or not output.is_file():
        raise AnchorError(f"{codec.name} qp {qp} encoding failed: {stats.error_line()}")
    return stats


def decode(stream: Path, geometry: Geometry, output: Path, ffmpeg: str) -> RunStats:
    """Decode an elementary stream to raw 4:2:0 at the input's bit depth."""
    cmd = [
        ffmpeg,
        "-v",
        "error",
        "-nostdin",
        "-y",
        "-i",
        stream,
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        geometry.pix_fmt,
        output,
    ]
    stats = run_measured(cmd, env=_env())
    if not stats.ok:
        raise AnchorError(f"decoding {stream.name} failed: {stats.error_line()}")
    return stats


def packet_sizes(stream: Path, ffmpeg: str) -> list[int]:
    """Bytes of each coded frame, from ffmpeg's framecrc listing of the stream (no re-encode)."""
    cmd = [ffmpeg, "-v", "error", "-nostdin", "-i", stream, "-c", "copy", "-f", "framecrc", "-"]
    stats = run_measured(cmd)
    if not stats.ok:
        raise AnchorError(f"cannot list the frames of {stream.name}: {stats.error_line()}")
    sizes = []
    for line in stats.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        sizes.append(int(fields[4]))  # stream, dts, pts, duration, size, crc
    return sizes
