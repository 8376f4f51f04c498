"""PNG picture sequences (``rec_%04d.png``): one RGB picture per frame.

The frames are converted to RGB by :mod:`canfvc_codec.io.color` (the same conversion the codec
and its metrics use) and written by a small PNG encoder: 8-bit RGB for 8-bit video, 16-bit RGB for
10-bit video. Numbering starts at 1, as ffmpeg's image sequences do. The pictures are renamed
into place together when the sequence is complete (an :class:`OutputGroup`), and any picture of
the pattern that already exists is found before the first frame is written.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from canfvc_codec.errors import OutputError
from canfvc_codec.io.base import VideoWriter
from canfvc_codec.io.frame import Frame, VideoInfo
from canfvc_codec.io.output import AtomicOutput, OutputGroup, check_output_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPE_RGB = 2
FILTER_SUB = 1  # each byte minus the byte one pixel to its left: cheap and effective on photos
ZLIB_LEVEL = 6
FIRST_NUMBER = 1
_PATTERN = re.compile(r"%(0?)(\d*)d")


def is_picture_pattern(path: str) -> bool:
    """A name with one frame-number field (``%d``, ``%04d``), as ffmpeg's image sequences have."""
    return len(_PATTERN.findall(Path(path).name)) == 1


def is_png_pattern(path: str) -> bool:
    return path.lower().endswith(".png") and is_picture_pattern(path)


def picture_name_regex(pattern: str) -> re.Pattern[str]:
    """What the names ``Path(pattern).name % n`` match, for n = 1, 2, ... (the number in group
    1): ``%04d`` writes four digits, more only without a leading zero; ``%4d`` pads with spaces."""
    name = Path(pattern).name
    field = _PATTERN.search(name)
    assert field is not None, f"not a picture pattern: {pattern}"
    zero_padded, width = field.group(1) == "0", int(field.group(2) or 0)
    if width > 1 and zero_padded:
        number = rf"(\d{{{width}}}|[1-9]\d{{{width},}})"
    else:
        number = r" *(0|[1-9]\d*)"
    before, after = name[: field.start()], name[field.end() :]
    return re.compile(re.escape(before) + number + re.escape(after))


def existing_pictures(pattern: str) -> list[Path]:
    """The files of ``pattern``'s folder that the sequence would write (numbers from 1)."""
    folder = Path(pattern).parent
    names = picture_name_regex(pattern)
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []  # no folder: check_output_path says so
    found = []
    for entry in entries:
        match = names.fullmatch(entry)
        if match is not None and int(match.group(1)) >= FIRST_NUMBER:
            found.append(folder / entry)
    return found


def check_png_pattern(pattern: str, overwrite: bool) -> None:
    """Fail before any work when the sequence cannot be written: its folder, and without
    ``overwrite`` any picture of it that already exists, whatever its number."""
    check_output_path(pattern % FIRST_NUMBER, overwrite)
    for picture in existing_pictures(pattern):
        check_output_path(picture, overwrite)


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
    """Writes ``pattern % n`` for n = 1, 2, ...; the pictures appear together when it closes,
    and an aborted run leaves none."""

    def __init__(self, pattern: str, info: VideoInfo, *, overwrite: bool = False) -> None:
        super().__init__(info)
        self.pattern = pattern
        self.overwrite = overwrite
        check_png_pattern(pattern, overwrite)
        self._pictures = OutputGroup()

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
        with AtomicOutput(name, self.overwrite, group=self._pictures) as out:
            out.write(encode_png(pixels))

    def _finish(self) -> None:
        if not self.frames_written:
            self._pictures.discard()
            raise OutputError(f"{self.pattern}: no frames to write")
        self._pictures.commit()

    def _discard(self) -> None:
        self._pictures.discard()
