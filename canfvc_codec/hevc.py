"""I-frames coded by HEVC intra (libx265 through ffmpeg): the paper's CANF-VC*.

With ``canfvc encode --intra-coder hevc`` each I-frame is the source's 4:2:0 planes coded by
libx265 as one intra picture (x265 veryslow, constant QP); the record's payload holds its Annex-B
bitstream, and the decoder decodes it with ffmpeg's HEVC decoder, bit-exact by the standard on any
platform. The QP comes from λ (:func:`qp_for_lambda`), so that the I-frames sit at the quality the
P-frames reach at that λ. The codec (``codec.py``) turns the decoded planes into the RGB reference
the P-frame networks use.

The ffmpeg is the first of the one on PATH and the one bundled with ``imageio-ffmpeg`` that has
what the task needs: libx265 to encode, an HEVC decoder to decode. Free of torch, so that the
command line can list the choices without loading the networks.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess

from canfvc_codec.errors import BitstreamError, CanfvcError
from canfvc_codec.io.frame import Frame, VideoInfo, frame_from_buffer, frame_to_bytes

ANFIC, HEVC = "anfic", "hevc"
INTRA_CODERS = (ANFIC, HEVC)  # the header's intra_coder code is the position (docs/bitstream.md)
DEFAULT_INTRA_CODER = ANFIC

# λ -> QP: QP = QP_AT_REFERENCE_LAMBDA - QP_PER_OCTAVE · log2(λ / REFERENCE_LAMBDA), rounded. A
# least-squares line through the QPs at which x265 intra pictures of the dev clips reach the mean
# PSNR-RGB of the published model's P-frames at λ 256..2048 (canfvc_codec/lab/fit_intra_qp.py,
# bench/results/hevc_intra/qp_fit.json).
REFERENCE_LAMBDA = 1024.0
QP_AT_REFERENCE_LAMBDA = 37.5
QP_PER_OCTAVE = 1.7
MIN_QP, MAX_QP = 0, 51  # HEVC's range for 8-bit video (10-bit allows down to -12; never needed)

X265_PRESET = "veryslow"  # the preset of the x265 anchors; an intra picture takes well under 1 s
# keyint=1: every picture intra; info=0: no SEI with x265's option string (about 2 KB a picture,
# nothing a decoder needs).
X265_PARAMS = "keyint=1:info=0:log-level=error"
PIX_FMTS = {8: "yuv420p", 10: "yuv420p10le"}
FFMPEG_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")
X265_ENCODER, HEVC_DECODER = "libx265", "hevc"
LOG_TAIL_LINES = 2


class HevcUnavailable(CanfvcError):
    """No ffmpeg with libx265 (to encode) or an HEVC decoder (to decode) is installed."""


def qp_for_lambda(lmbda: float) -> int:
    """The x265 QP of HEVC I-frames at λ (module docstring; the fit:
    :mod:`canfvc_codec.lab.fit_intra_qp`)."""
    qp = QP_AT_REFERENCE_LAMBDA - QP_PER_OCTAVE * math.log2(lmbda / REFERENCE_LAMBDA)
    return min(max(round(qp), MIN_QP), MAX_QP)


def ffmpeg_candidates() -> list[str]:
    """The ffmpeg on PATH, then the one imageio-ffmpeg bundles, where they exist."""
    found = [exe] if (exe := shutil.which("ffmpeg")) else []
    try:
        import imageio_ffmpeg

        found.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):  # not installed, or its binary is missing
        pass
    return found


@functools.lru_cache(maxsize=8)
def _listing(exe: str, kind: str) -> str:
    """``ffmpeg -encoders`` or ``-decoders``; empty when that ffmpeg does not run."""
    try:
        done = subprocess.run(
            [exe, *FFMPEG_QUIET, f"-{kind}"], capture_output=True, stdin=subprocess.DEVNULL
        )
    except OSError:
        return ""
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else ""


def find_ffmpeg(kind: str, name: str) -> str:
    """The first ffmpeg that lists ``name`` among its ``kind`` ("encoders" or "decoders")."""
    for exe in ffmpeg_candidates():
        if f" {name} " in _listing(exe, kind):
            return exe
    if kind == "encoders":
        need = "--intra-coder hevc needs ffmpeg with the libx265 encoder"
    else:
        need = "this stream's I-frames are HEVC intra: decoding them needs ffmpeg's HEVC decoder"
    raise HevcUnavailable(f"{need}, and no ffmpeg here has it (install ffmpeg or imageio-ffmpeg)")


def _log_tail(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    return " / ".join([line for line in lines if line][-LOG_TAIL_LINES:]) or "no message"


class HevcIntra:
    """Codes one 4:2:0 picture of ``info``'s size and depth as an HEVC intra picture and back.

    ``qp`` matters to :meth:`encode` only: the decoder reads everything from the payload. The
    ffmpeg binaries are looked up here, so that a missing one fails before any frame is coded.
    """

    def __init__(self, info: VideoInfo, qp: int | None = None) -> None:
        if info.bit_depth not in PIX_FMTS:
            raise CanfvcError(f"HEVC intra codes 8 or 10-bit video, not {info.bit_depth}-bit")
        self.info = info
        self.qp = qp
        self._raw = ["-f", "rawvideo", "-pix_fmt", PIX_FMTS[info.bit_depth]]
        self._encoder = None if qp is None else find_ffmpeg("encoders", X265_ENCODER)
        self._decoder = find_ffmpeg("decoders", HEVC_DECODER)

    def encode(self, frame: Frame) -> bytes:
        """The Annex-B bitstream of ``frame`` as one intra picture at ``qp``."""
        if self._encoder is None:
            raise ValueError("an HevcIntra made without a QP only decodes")
        size = f"{self.info.width}x{self.info.height}"
        cmd = [
            self._encoder, *FFMPEG_QUIET, *self._raw, "-s", size, "-i", "pipe:",
            "-frames:v", "1", "-c:v", X265_ENCODER, "-preset", X265_PRESET,
            "-x265-params", f"qp={self.qp}:{X265_PARAMS}", "-f", "hevc", "pipe:",
        ]  # fmt: skip
        done = subprocess.run(cmd, input=frame_to_bytes(frame, self.info), capture_output=True)
        if done.returncode != 0 or not done.stdout:
            raise CanfvcError(f"x265 could not code an I-frame: {_log_tail(done.stderr)}")
        return done.stdout

    def decode(self, payload: bytes) -> Frame:
        """The picture of an Annex-B payload; BitstreamError when it does not decode to exactly
        one picture of the video's size (``-xerror``: ffmpeg stops at the first error instead of
        concealing it)."""
        cmd = [
            self._decoder, *FFMPEG_QUIET, "-xerror", "-f", "hevc", "-i", "pipe:",
            *self._raw, "pipe:",
        ]  # fmt: skip
        done = subprocess.run(cmd, input=payload, capture_output=True)
        if done.returncode != 0:
            reason = _log_tail(done.stderr)
            raise BitstreamError(f"the HEVC intra picture does not decode: {reason}")
        if len(done.stdout) != self.info.frame_bytes:
            raise BitstreamError(
                f"the HEVC intra picture decodes to {len(done.stdout)} bytes, "
                f"not one {self.info.width}x{self.info.height} picture"
            )
        return frame_from_buffer(done.stdout, self.info)
