"""PNG picture sequences (``rec_%04d.png``): one RGB picture per frame.

The frames are converted to RGB by :mod:`canfvc_codec.io.color` (the same conversion the codec
and its metrics use) and written by a small PNG encoder: 8-bit RGB for 8-bit video, 16-bit RGB for
10-bit video. Numbering starts at 1, as ffmpeg's image sequences do.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np

from canfvc_codec.errors import OutputError
from canfvc_codec.io.base import VideoWriter
from canfvc_codec.io.frame import Frame, VideoInfo
from canfvc_codec.io.output import AtomicOutput, check_output_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPE_RGB = 2
FILTER_SUB = 1  # each byte minus the byte one pixel to its left: cheap and effective on photos
ZLIB_LEVEL = 6
FIRST_NUMBER = 1
_PATTERN = re.compile(r"%0?\d*d")


def is_png_pattern(path: str) -> bool:
    return path.lower().endswith(".png") and len(_PATTERN.findall(Path(path).name)) == 1


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) ``uint8`` or ``uint16`` image."""
    height, width, _ = rgb.shape
    bits = 16 if rgb.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(rgb, dtype=">u2" if bits == 16 else np.uint8)
    raw = rows.view(np.uint8).reshape(height, -1)
    pixel_bytes = 3 * bits // 8
    filtered = raw.copy()
    filtered[:, pixel_bytes:] = raw[:, pixel_bytes:] - raw[:, :-pixel_bytes]  # wraps mod 256
    scanlines = np.hstack([np.full((height, 1), FILTER_SUB, np.uint8), filtered])
    header = struct.pack(">IIBBBBB", width, height, bits, COLOR_TYPE_RGB, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), ZLIB_LEVEL))
        + _chunk(b"IEND", b"")
    )


class PngSequenceWriter(VideoWriter):
    """Writes ``pattern % n`` for n = 1, 2, ...; an aborted run removes every picture it wrote."""

    def __init__(self, pattern: str, info: VideoInfo, *, overwrite: bool = False) -> None:
        super().__init__(info)
        self.pattern = pattern
        self.overwrite = overwrite
        self._written: list[Path] = []
        check_output_path(self._name(FIRST_NUMBER), overwrite)

    def _name(self, number: int) -> str:
        return self.pattern % number

    def _write(self, frame: Frame) -> None:
        # Imported here so that opening videos (and the command line) does not load torch.
        from canfvc_codec.io.color import yuv_to_rgb

        rgb = yuv_to_rgb(frame, self.info).permute(1, 2, 0).numpy()
        if self.info.bit_depth > 8:
            pixels = np.round(rgb * np.iinfo(np.uint16).max).astype(np.uint16)
        else:
            pixels = np.round(rgb * np.iinfo(np.uint8).max).astype(np.uint8)
        name = self._name(FIRST_NUMBER + self.frames_written)
        with AtomicOutput(name, self.overwrite) as out:
            out.write(encode_png(pixels))
        self._written.append(Path(name))

    def _finish(self) -> None:
        if not self._written:
            raise OutputError(f"{self.pattern}: no frames to write")

    def _discard(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
