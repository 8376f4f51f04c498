"""The .cvc container, version 4: a header, frame records, an end record (docs/bitstream.md).

Everything is little-endian and length-prefixed with unsigned LEB128 varints; there are no marker
bytes. A reader goes front to back and never seeks, so a pipe works. Every length is checked
against a bound derived from the header (and against the bytes left, when the source can tell)
before anything is read, and reads are chunked, so a corrupt length cannot drive an allocation.
Any damage is reported as :class:`BitstreamError` naming the frame.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

from canfvc_codec.errors import BitstreamError
from canfvc_codec.hevc import ANFIC, INTRA_CODERS
from canfvc_codec.io.frame import VideoInfo
from canfvc_codec.rates import Rates

MAGIC = b"CVC"
VERSION = 4
# Version 1 lacks the header's motion lambda (its motion coders ran at lambda), versions 1 and 2
# the intra coder (theirs is ANFIC), versions 1 to 3 the intra lambda (their I-frames ran at
# lambda); all are still read.
READABLE_VERSIONS = (1, 2, 3, 4)
FIRST_VERSION_WITH_MOTION_LAMBDA = 2
FIRST_VERSION_WITH_INTRA_CODER = 3
FIRST_VERSION_WITH_INTRA_LAMBDA = 4

TYPE_END = 0
TYPE_I = 1
TYPE_P = 2
# The frame types, as every part of canfvc names them: intra-coded and predicted.
INTRA, INTER = "I", "P"
_TYPE_CODES = {INTRA: TYPE_I, INTER: TYPE_P}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}

MATRICES = ("bt709", "bt601")  # code = position
# What a header says of the pictures, under the names VideoInfo gives them.
VIDEO_FIELDS = ("width", "height", "fps_num", "fps_den", "bit_depth", "matrix", "full_range")

MODEL_ID_BYTES = 8
MAX_DIMENSION = 16384
MAX_U32 = 2**32 - 1
MIN_BIT_DEPTH, MAX_BIT_DEPTH = 8, 16
MAX_HEADER_BYTES = 128
MAX_STREAMS = 16
MAX_VARINT_BYTES = 10
# A frame's payload may not exceed this many times its raw size (16-bit samples, three full
# planes) plus a fixed allowance: far above any real frame, small enough to reject a length
# that a single damaged byte has made huge.
PAYLOAD_RAW_FACTOR = 8
PAYLOAD_ALLOWANCE = 1 << 20
# Reads are done in chunks of at most this size, so a length that promises more bytes than the
# source holds costs at most one chunk of memory before the truncation is found.
READ_CHUNK = 1 << 20

_CRC = struct.Struct("<I")
_F64 = struct.Struct("<d")


@dataclass
class StreamHeader:
    """Everything a decoder needs besides the weights (which ``model_id`` names)."""

    model_id: bytes
    width: int
    height: int
    fps_num: int
    fps_den: int
    bit_depth: int
    matrix: str
    full_range: bool
    gop: int  # 0 = only the first frame is intra
    # λ, motion λ and intra λ; a version-1 file has only λ (its motion coders ran at λ), files
    # before version 4 no intra λ (their I-frames ran at λ).
    rates: Rates
    frame_count: int  # 0 = unknown (streams)
    # What codes the I-frames: the ANFIC network or HEVC intra (canfvc_codec.hevc).
    intra_coder: str = ANFIC

    @classmethod
    def for_video(
        cls,
        info: VideoInfo,
        *,
        model_id: bytes,
        gop: int,
        rates: Rates,
        intra_coder: str = ANFIC,
    ) -> StreamHeader:
        """The header of a stream coding the video ``info`` describes."""
        picture = {name: getattr(info, name) for name in VIDEO_FIELDS}
        return cls(
            model_id=model_id,
            **picture,
            gop=gop,
            rates=rates,
            frame_count=info.frame_count or 0,
            intra_coder=intra_coder,
        )

    @property
    def video_info(self) -> VideoInfo:
        """The decoded video as readers and writers describe it."""
        picture = {name: getattr(self, name) for name in VIDEO_FIELDS}
        return VideoInfo(**picture, frame_count=self.frame_count or None)

    def check(self) -> None:
        """Raise ValueError unless every field is within the bounds a reader accepts."""
        problems = []
        if not isinstance(self.model_id, bytes | bytearray) or len(self.model_id) != MODEL_ID_BYTES:
            problems.append(f"model_id must be {MODEL_ID_BYTES} bytes")
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            problems.append(f"size {self.width}x{self.height} outside 1..{MAX_DIMENSION}")
        if not (1 <= self.fps_num <= MAX_U32 and 1 <= self.fps_den <= MAX_U32):
            problems.append(f"frame rate {self.fps_num}/{self.fps_den} invalid")
        if not MIN_BIT_DEPTH <= self.bit_depth <= MAX_BIT_DEPTH:
            problems.append(f"bit depth {self.bit_depth} outside {MIN_BIT_DEPTH}..{MAX_BIT_DEPTH}")
        if self.matrix not in MATRICES:
            problems.append(f"colour matrix {self.matrix!r} not one of {', '.join(MATRICES)}")
        if not 0 <= self.gop <= MAX_U32:
            problems.append(f"GOP {self.gop} invalid")
        lambdas = (
            ("lambda", self.rates.lmbda),
            ("motion lambda", self.rates.motion),
            ("intra lambda", self.rates.intra),
        )
        for name, value in lambdas:
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} {value} must be positive and finite")
        if not 0 <= self.frame_count <= MAX_U32:
            problems.append(f"frame count {self.frame_count} invalid")
        if self.intra_coder not in INTRA_CODERS:
            known = ", ".join(INTRA_CODERS)
            problems.append(f"intra coder {self.intra_coder!r} not one of {known}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def max_payload(self) -> int:
        """The largest frame payload a reader accepts for this header."""
        return PAYLOAD_RAW_FACTOR * 6 * self.width * self.height + PAYLOAD_ALLOWANCE


@dataclass
class FrameRecord:
    """One coded frame: its type, its entropy sub-streams and the CRC32 of the encoder's
    reconstruction (8-bit YUV planes, Y then U then V)."""

    frame_type: str  # "I" or "P"
    streams: list[bytes] = field(default_factory=list)
    recon_crc: int = 0


# ---------------------------------------------------------------------------------------------
# Encoding helpers.


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _header_fields(header: StreamHeader) -> bytes:
    return b"".join(
        [
            bytes(header.model_id),
            encode_varint(header.width),
            encode_varint(header.height),
            encode_varint(header.fps_num),
            encode_varint(header.fps_den),
            bytes([header.bit_depth, MATRICES.index(header.matrix), int(bool(header.full_range))]),
            encode_varint(header.gop),
            _F64.pack(float(header.rates.lmbda)),
            encode_varint(header.frame_count),
            _F64.pack(float(header.rates.motion)),
            bytes([INTRA_CODERS.index(header.intra_coder)]),
            _F64.pack(float(header.rates.intra)),
        ]
    )


def encode_header(header: StreamHeader) -> bytes:
    """Magic, version, header length, header fields and the header CRC32."""
    header.check()
    fields = _header_fields(header)
    head = MAGIC + bytes([VERSION]) + encode_varint(len(fields)) + fields
    return head + _CRC.pack(zlib.crc32(head))


def encode_record(record: FrameRecord, max_payload: int | None = None) -> bytes:
    """A frame record: type, payload length, payload, recon CRC32 and the record's CRC32."""
    if record.frame_type not in _TYPE_CODES:
        raise ValueError(f"frame type must be I or P, not {record.frame_type!r}")
    if len(record.streams) > MAX_STREAMS:
        raise ValueError(f"at most {MAX_STREAMS} sub-streams per frame")
    if not 0 <= record.recon_crc <= MAX_U32:
        raise ValueError("recon_crc must be a 32-bit unsigned value")
    parts = [encode_varint(len(record.streams))]
    for stream in record.streams:
        parts += [encode_varint(len(stream)), bytes(stream)]
    payload = b"".join(parts)
    if max_payload is not None and len(payload) > max_payload:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {max_payload}")
    body = bytes([_TYPE_CODES[record.frame_type]]) + encode_varint(len(payload)) + payload
    body += _CRC.pack(record.recon_crc)
    return body + _CRC.pack(zlib.crc32(body))


class CvcWriter:
    """Writes a .cvc stream: the header at once, a record per ``write_frame``, the end record on
    ``close`` (which does not close ``fileobj``). Usable as a context manager."""

    def __init__(self, fileobj: BinaryIO, header: StreamHeader) -> None:
        self._file = fileobj
        self.header = header
        self.frames_written = 0
        self.bytes_written = 0
        self._closed = False
        self._write(encode_header(header))

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self.bytes_written += len(data)

    def write_frame(self, record: FrameRecord) -> int:
        """Append one frame; returns the record's size in bytes."""
        if self._closed:
            raise ValueError("write_frame after close")
        if self.frames_written == 0 and record.frame_type != INTRA:
            raise ValueError("the first frame must be an I-frame")
        count = self.header.frame_count
        if count and self.frames_written >= count:
            raise ValueError(f"the header announces {count} frames")
        data = encode_record(record, self.header.max_payload)
        self._write(data)
        self.frames_written += 1
        return len(data)

    def close(self) -> None:
        """Write the end record and flush."""
        if self._closed:
            return
        count = self.header.frame_count
        if count and self.frames_written != count:
            raise ValueError(f"wrote {self.frames_written} frames, the header announces {count}")
        self._write(bytes([TYPE_END]))
        self._file.flush()
        self._closed = True

    def __enter__(self) -> CvcWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


# ---------------------------------------------------------------------------------------------
# Reading.


def _remaining_bytes(fileobj: BinaryIO) -> int | None:
    """Bytes left in ``fileobj`` when it can seek (a file, a buffer), None for a pipe."""
    try:
        if not fileobj.seekable():
            return None
        here = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(here)
        return max(end - here, 0)
    except (OSError, ValueError, AttributeError):
        return None


class _Source:
    """Front-to-back reads with bounds, position tracking and errors naming the frame."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._file = fileobj
        self.position = 0
        self._limit = _remaining_bytes(fileobj)
        self.frame: int | None = None

    def error(self, message: str) -> BitstreamError:
        return BitstreamError(message, frame=self.frame)

    def read(self, size: int, what: str) -> bytes:
        if self._limit is not None and size > self._limit - self.position:
            left = self._limit - self.position
            raise self.error(f"truncated {what}: needs {size} bytes, {left} left")
        chunks, left = [], size
        while left:
            try:
                chunk = self._file.read(min(left, READ_CHUNK))
            except OSError as exc:
                raise self.error(f"cannot read {what}: {exc.strerror or exc}") from None
            if not chunk:
                raise self.error(f"truncated {what}")
            chunks.append(chunk)
            left -= len(chunk)
        self.position += size
        return b"".join(chunks)

    def read_varint(self, what: str, maximum: int, raw: bytearray) -> int:
        """A varint no larger than ``maximum``; its bytes are appended to ``raw`` (for CRCs)."""
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            byte = self.read(1, what)[0]
            raw.append(byte)
            value |= (byte & 0x7F) << shift
            if value > maximum:
                raise self.error(f"{what} exceeds {maximum}")
            if byte < 0x80:
                return value
            shift += 7
        raise self.error(f"{what}: malformed length")


class _Fields:
    """Parses fields out of a block that has already been read and checked."""

    def __init__(self, data: bytes, source: _Source, what: str) -> None:
        self._data, self._pos, self._source, self._what = data, 0, source, what

    def take(self, size: int, name: str) -> bytes:
        if size > len(self._data) - self._pos:
            raise self._source.error(f"{self._what}: {name} runs past its end")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def varint(self, name: str, low: int, high: int) -> int:
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            byte = self.take(1, name)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        else:
            raise self._source.error(f"{self._what}: {name} is malformed")
        if not low <= value <= high:
            raise self._source.error(f"{self._what}: {name} {value} outside {low}..{high}")
        return value

    def byte(self, name: str, low: int, high: int) -> int:
        value = self.take(1, name)[0]
        if not low <= value <= high:
            raise self._source.error(f"{self._what}: {name} {value} outside {low}..{high}")
        return value

    def lmbda(self, name: str) -> float:
        value = _F64.unpack(self.take(_F64.size, name))[0]
        if not (math.isfinite(value) and value > 0):
            raise self._source.error(f"{self._what}: {name} {value} is not positive and finite")
        return value

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise self._source.error(f"{self._what}: {len(self._data) - self._pos} stray bytes")


class CvcReader:
    """Reads a .cvc stream front to back: ``.header`` at once, then iterate for the frames.

    Raises :class:`BitstreamError` (``frame=k`` for damage in frame ``k``) for anything that is
    not a well-formed stream of a version in ``READABLE_VERSIONS``. Reading stops at the end record.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._source = _Source(fileobj)
        self.version = VERSION
        self.header = self._read_header()
        self.header_bytes = self._source.position
        self.frames_read = 0
        self.finished = False
        self.last_record_bytes = 0

    @property
    def position(self) -> int:
        """Bytes consumed so far."""
        return self._source.position

    def _read_header(self) -> StreamHeader:
        source = self._source
        magic = source.read(len(MAGIC) + 1, "file signature")
        if magic[:3] != MAGIC:
            raise source.error("not a .cvc file (bad signature)")
        version = self.version = magic[3]
        if version not in READABLE_VERSIONS:
            known = ", ".join(map(str, READABLE_VERSIONS))
            raise source.error(f"unsupported .cvc version {version} (this reader knows {known})")
        raw = bytearray(magic)
        length = source.read_varint("header length", MAX_HEADER_BYTES, raw)
        fields_bytes = source.read(length, "header")
        crc = _CRC.unpack(source.read(_CRC.size, "header CRC"))[0]
        if zlib.crc32(bytes(raw) + fields_bytes) != crc:
            raise source.error("header CRC mismatch (damaged header)")
        fields = _Fields(fields_bytes, source, "header")
        model_id = fields.take(MODEL_ID_BYTES, "model id")
        width = fields.varint("width", 1, MAX_DIMENSION)
        height = fields.varint("height", 1, MAX_DIMENSION)
        fps_num = fields.varint("fps numerator", 1, MAX_U32)
        fps_den = fields.varint("fps denominator", 1, MAX_U32)
        bit_depth = fields.byte("bit depth", MIN_BIT_DEPTH, MAX_BIT_DEPTH)
        matrix = MATRICES[fields.byte("colour matrix", 0, len(MATRICES) - 1)]
        full_range = bool(fields.byte("range", 0, 1))
        gop = fields.varint("GOP", 0, MAX_U32)
        lmbda = fields.lmbda("lambda")
        frame_count = fields.varint("frame count", 0, MAX_U32)
        motion_lmbda = lmbda
        if version >= FIRST_VERSION_WITH_MOTION_LAMBDA:
            motion_lmbda = fields.lmbda("motion lambda")
        intra_coder = ANFIC
        if version >= FIRST_VERSION_WITH_INTRA_CODER:
            intra_coder = INTRA_CODERS[fields.byte("intra coder", 0, len(INTRA_CODERS) - 1)]
        intra_lmbda = lmbda
        if version >= FIRST_VERSION_WITH_INTRA_LAMBDA:
            intra_lmbda = fields.lmbda("intra lambda")
        fields.finish()
        return StreamHeader(
            model_id,
            width,
            height,
            fps_num,
            fps_den,
            bit_depth,
            matrix,
            full_range,
            gop,
            Rates(lmbda, motion_lmbda, intra_lmbda),
            frame_count,
            intra_coder,
        )

    def read_frame(self) -> FrameRecord | None:
        """The next frame record, or None at the end record."""
        if self.finished:
            return None
        source = self._source
        source.frame = self.frames_read
        start = source.position
        raw = bytearray(source.read(1, "frame type"))
        code = raw[0]
        count = self.header.frame_count
        if code == TYPE_END:
            if count and self.frames_read != count:
                raise source.error(f"end of stream after {self.frames_read} of {count} frames")
            self.finished = True
            self.last_record_bytes = 1
            return None
        if code not in _TYPE_NAMES:
            raise source.error(f"unknown record type {code}")
        if count and self.frames_read >= count:
            raise source.error(f"more frames than the {count} the header announces")
        length = source.read_varint("payload length", self.header.max_payload, raw)
        payload = source.read(length, "frame payload")
        recon = source.read(_CRC.size, "reconstruction CRC")
        crc = _CRC.unpack(source.read(_CRC.size, "record CRC"))[0]
        if zlib.crc32(recon, zlib.crc32(payload, zlib.crc32(raw))) != crc:
            raise source.error("record CRC mismatch (damaged frame)")
        frame_type = _TYPE_NAMES[code]
        if self.frames_read == 0 and frame_type != INTRA:
            raise source.error("the first frame is not an I-frame")
        fields = _Fields(payload, source, "payload")
        streams = []
        for k in range(fields.varint("sub-stream count", 0, MAX_STREAMS)):
            size = fields.varint(f"sub-stream {k} length", 0, length)
            streams.append(fields.take(size, f"sub-stream {k}"))
        fields.finish()
        self.frames_read += 1
        self.last_record_bytes = source.position - start
        return FrameRecord(frame_type, streams, _CRC.unpack(recon)[0])

    def __iter__(self) -> Iterator[FrameRecord]:
        while (record := self.read_frame()) is not None:
            yield record


# ---------------------------------------------------------------------------------------------
# `canfvc info`.


def bits_per_pixel(num_bytes: int, width: int, height: int, frames: int = 1) -> float:
    """bpp of ``num_bytes`` spread over ``frames`` unpadded pictures."""
    if width <= 0 or height <= 0 or frames <= 0:
        raise ValueError(f"invalid geometry {width}x{height}x{frames}")
    return 8 * num_bytes / (width * height * frames)


def bitrate_kbps(total_bytes: int, frame_count: int, fps: Fraction) -> float:
    """kbit/s of ``total_bytes`` holding ``frame_count`` frames played at ``fps`` (0 for none)."""
    return 8 * total_bytes / 1000 * fps / frame_count if frame_count else 0.0


def describe(fileobj: BinaryIO) -> dict:
    """Header fields, per-frame type/bytes/sub-stream sizes, totals and bpp of a .cvc stream.

    bpp counts every byte of the file (header, records, end record) over the unpadded pixels.
    """
    reader = CvcReader(fileobj)
    h = reader.header
    frames = []
    for record in reader:
        frames.append(
            {
                "index": len(frames),
                "type": record.frame_type,
                "bytes": reader.last_record_bytes,
                "streams": [len(s) for s in record.streams],
                "recon_crc": f"{record.recon_crc:08x}",
            }
        )
    total_bytes = reader.position
    mean_bytes = {
        kind: sum(sizes) / len(sizes) if sizes else None
        for kind in (INTRA, INTER)
        for sizes in [[f["bytes"] for f in frames if f["type"] == kind]]
    }
    i_mean, p_mean = mean_bytes[INTRA], mean_bytes[INTER]
    totals = {
        "frames": len(frames),
        "i_frames": sum(f["type"] == INTRA for f in frames),
        "p_frames": sum(f["type"] == INTER for f in frames),
        "i_frame_bytes_mean": round(i_mean) if i_mean is not None else None,
        "p_frame_bytes_mean": round(p_mean) if p_mean is not None else None,
        # What conditional coding saves: a P-frame's bits over an I-frame's, on average.
        "p_to_i": p_mean / i_mean if p_mean is not None and i_mean else None,
        "header_bytes": reader.header_bytes,
        "bytes": total_bytes,
        "bits": 8 * total_bytes,
        "bpp": bits_per_pixel(total_bytes, h.width, h.height, len(frames)) if frames else 0.0,
        "kbps": bitrate_kbps(total_bytes, len(frames), Fraction(h.fps_num, h.fps_den)),
    }
    header = {
        "version": reader.version,
        "model_id": h.model_id.hex(),
        "width": h.width,
        "height": h.height,
        "fps_num": h.fps_num,
        "fps_den": h.fps_den,
        "bit_depth": h.bit_depth,
        "matrix": h.matrix,
        "full_range": h.full_range,
        "gop": h.gop,
        "lambda": h.rates.lmbda,
        "motion_lambda": h.rates.motion,
        "intra_coder": h.intra_coder,
        "intra_lambda": h.rates.intra,
        "frame_count": h.frame_count,
    }
    return {"header": header, "frames": frames, "totals": totals}
