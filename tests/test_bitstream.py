"""The .cvc container: round trips, pipes, and damaged files (truncations, byte mutations)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from canfvc_codec.bitstream import (
    READ_CHUNK,
    CvcReader,
    CvcWriter,
    FrameRecord,
    StreamHeader,
    describe,
    encode_header,
    encode_varint,
)
from canfvc_codec.entropy import GaussianConditional
from canfvc_codec.errors import BitstreamError
from canfvc_codec.io import VideoInfo
from canfvc_codec.rates import Rates
from tests.conftest import older_version

MUTATIONS = 10_000
REPO = Path(__file__).resolve().parents[1]


def _header(
    lmbda: float = 1024.0,
    motion_lmbda: float | None = None,
    intra_lmbda: float | None = None,
    **changes,
) -> StreamHeader:
    """A header with ``changes``; the motion and intra λ default to λ."""
    motion = lmbda if motion_lmbda is None else motion_lmbda
    intra = lmbda if intra_lmbda is None else intra_lmbda
    fields = dict(
        model_id=bytes(range(8)),
        width=176,
        height=144,
        fps_num=30000,
        fps_den=1001,
        bit_depth=8,
        matrix="bt709",
        full_range=False,
        gop=4,
        rates=Rates(lmbda, motion, intra),
        frame_count=0,
    )
    fields.update(changes)
    return StreamHeader(**fields)


def _sample_records(count: int = 5) -> list[FrameRecord]:
    """Frames whose sub-streams are real entropy-coded latents of a few sizes."""
    model = GaussianConditional().eval()
    gen = torch.Generator().manual_seed(0)
    records = []
    for k in range(count):
        streams = []
        for channels in (2, 6) if k % 4 == 0 else (1, 3, 1, 4):
            scales = torch.rand(1, channels, 3, 4, generator=gen) * 4 + 0.1
            y = torch.randn(1, channels, 3, 4, generator=gen) * scales
            streams.append(model.compress(y, scales))
        records.append(FrameRecord("I" if k % 4 == 0 else "P", streams, zlib.crc32(bytes([k]))))
    return records


def _write(header: StreamHeader, records: list[FrameRecord]) -> bytes:
    buffer = io.BytesIO()
    with CvcWriter(buffer, header) as writer:
        for record in records:
            writer.write_frame(record)
    return buffer.getvalue()


def _read(fileobj) -> tuple[StreamHeader, list[FrameRecord]]:
    reader = CvcReader(fileobj)
    return reader.header, list(reader)


class _Pipe(io.RawIOBase):
    """A non-seekable source that hands out at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data[self._pos : self._pos + min(len(buffer), self._step)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


@pytest.fixture(scope="module")
def sample() -> tuple[StreamHeader, list[FrameRecord], bytes]:
    header, records = _header(frame_count=5), _sample_records(5)
    return header, records, _write(header, records)


@pytest.mark.parametrize(
    "header",
    [
        _header(),
        _header(width=1, height=1, fps_num=1, fps_den=1, gop=0, lmbda=0.1, frame_count=1),
        _header(
            width=16384,
            height=8640,
            bit_depth=10,
            matrix="bt601",
            full_range=True,
            gop=2**32 - 1,
            lmbda=1234.5678,
            frame_count=2**32 - 1,
            model_id=b"\xff" * 8,
            motion_lmbda=308.64195,
            intra_coder="hevc",
        ),
    ],
)
def test_header_roundtrip(header):
    count = header.frame_count if header.frame_count < 4 else 0
    header.frame_count = count
    records = [FrameRecord("I", [b"abc"], 7)] + [FrameRecord("P", [], 0)] * max(count - 1, 0)
    decoded, decoded_records = _read(io.BytesIO(_write(header, records)))
    assert decoded == header
    assert decoded_records == records


@pytest.mark.parametrize("frame_count", [None, 5])
def test_header_describes_the_video_it_was_made_for(frame_count):
    info = VideoInfo(
        width=352,
        height=288,
        fps_num=25,
        fps_den=1,
        bit_depth=10,
        matrix="bt601",
        full_range=True,
        frame_count=frame_count,
    )
    header = StreamHeader.for_video(
        info, model_id=bytes(8), gop=16, rates=Rates(512.0, 256.0, 1024.0)
    )
    header.check()
    assert header.frame_count == (frame_count or 0)  # 0: unknown, as a pipe's
    assert (header.gop, header.rates) == (16, Rates(512.0, 256.0, 1024.0))
    decoded, _ = _read(
        io.BytesIO(_write(header, [FrameRecord("I", [b"x"], 0)] * (frame_count or 1)))
    )
    assert decoded.video_info == info


def test_motion_lambda_must_be_positive():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="motion lambda"):
            _header(motion_lmbda=bad).check()


def test_intra_lambda_must_be_positive():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="intra lambda"):
            _header(intra_lmbda=bad).check()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_versions_are_read_with_the_defaults_of_their_missing_fields(sample, version):
    """Version 1: the motion λ is λ; versions 1 and 2: the I-frames are ANFIC's; versions 1 to
    3: the I-frames' λ is λ."""
    header, records, data = sample
    assert data[3] == 4
    current = _write(
        _header(frame_count=5, motion_lmbda=256.0, intra_coder="hevc", intra_lmbda=2048.0),
        records,
    )
    assert CvcReader(io.BytesIO(current)).header.rates.intra == 2048.0
    reader = CvcReader(io.BytesIO(older_version(current, version)))
    assert reader.version == version
    lmbda = header.rates.lmbda
    assert reader.header.rates.motion == (256.0 if version >= 2 else lmbda)
    assert reader.header.intra_coder == ("hevc" if version >= 3 else "anfic")
    assert reader.header.rates.intra == lmbda
    assert list(reader) == records
    described = describe(io.BytesIO(older_version(current, version)))["header"]
    assert described["version"] == version and described["intra_lambda"] == lmbda


def test_the_intra_coder_is_in_the_header_and_must_be_known():
    data = _write(_header(frame_count=1, intra_coder="hevc"), [FrameRecord("I", [b"x"], 0)])
    assert CvcReader(io.BytesIO(data)).header.intra_coder == "hevc"
    assert describe(io.BytesIO(data))["header"]["intra_coder"] == "hevc"
    with pytest.raises(ValueError, match="intra coder 'bpg'"):
        _header(intra_coder="bpg").check()
    # The intra coder is the byte before the intra λ (f64), the header's last field before its
    # CRC: an unknown code is refused.
    length = data[4]
    head = bytearray(data[: 5 + length])
    head[-1 - 8] = 2
    damaged = bytes(head) + zlib.crc32(head).to_bytes(4, "little") + data[5 + length + 4 :]
    with pytest.raises(BitstreamError, match="header: intra coder 2 outside 0..1"):
        CvcReader(io.BytesIO(damaged))


def test_records_roundtrip_from_file_and_pipe(sample, tmp_path):
    header, records, data = sample
    path = tmp_path / "sample.cvc"
    path.write_bytes(data)
    with path.open("rb") as handle:
        assert _read(handle) == (header, records)
    assert _read(_Pipe(data)) == (header, records)
    assert _read(io.BufferedReader(_Pipe(data, step=1))) == (header, records)


def test_streams_of_any_size_and_count():
    records = [
        FrameRecord("I", [], 0),
        FrameRecord("P", [b""], 1),
        FrameRecord("P", [b"x" * 300, b"", bytes(range(256)) * 40], 2**32 - 1),
        FrameRecord("I", [bytes([k]) for k in range(16)], 5),
    ]
    assert _read(io.BytesIO(_write(_header(), records)))[1] == records


def test_reader_stops_at_the_end_record():
    data = _write(_header(), [FrameRecord("I", [b"a"], 1)])
    source = io.BytesIO(data + b"trailing")
    reader = CvcReader(source)
    assert len(list(reader)) == 1
    assert reader.finished and source.tell() == len(data)


def test_writer_rejects_what_a_reader_would_reject():
    with pytest.raises(ValueError):
        CvcWriter(io.BytesIO(), _header(width=0))
    with pytest.raises(ValueError):
        CvcWriter(io.BytesIO(), _header(lmbda=float("nan")))
    with pytest.raises(ValueError):
        CvcWriter(io.BytesIO(), _header()).write_frame(FrameRecord("P", [], 0))
    writer = CvcWriter(io.BytesIO(), _header(frame_count=2))
    writer.write_frame(FrameRecord("I", [], 0))
    with pytest.raises(ValueError):
        writer.close()


def test_describe_counts_every_byte(sample):
    header, records, data = sample
    info = describe(io.BytesIO(data))
    totals = info["totals"]
    assert totals["bytes"] == len(data)
    assert totals["header_bytes"] + sum(f["bytes"] for f in info["frames"]) + 1 == len(data)
    assert totals["bpp"] == pytest.approx(8 * len(data) / (176 * 144 * len(records)))
    seconds = len(records) * 1001 / 30000  # the header's 29.97 frames per second
    assert totals["kbps"] == pytest.approx(8 * len(data) / 1000 / seconds)
    assert [f["type"] for f in info["frames"]] == [r.frame_type for r in records]
    assert [f["streams"] for f in info["frames"]] == [[len(s) for s in r.streams] for r in records]
    assert info["header"]["model_id"] == header.model_id.hex()
    assert (totals["i_frames"], totals["p_frames"]) == (2, 3)
    sizes = {kind: [f["bytes"] for f in info["frames"] if f["type"] == kind] for kind in "IP"}
    assert totals["i_frame_bytes_mean"] == round(sum(sizes["I"]) / 2)
    assert totals["p_frame_bytes_mean"] == round(sum(sizes["P"]) / 3)
    assert totals["p_to_i"] == pytest.approx((sum(sizes["P"]) / 3) / (sum(sizes["I"]) / 2))
    json.dumps(info)  # plain data only


class _CountedReads:
    """A source that counts the reads asked of it and the bytes it handed out (and passes
    everything else through)."""

    def __init__(self, fileobj) -> None:
        self._file, self.reads, self.bytes_read = fileobj, 0, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self.reads += 1
        self.bytes_read += len(chunk)
        return chunk

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def _check_damaged(data: bytes, original, pipe: bool = False) -> BitstreamError | None:
    """Decode ``data``: the original (None) or a one-line BitstreamError (returned), never
    another exception, and with work bounded by the file's size."""
    source = _CountedReads(_Pipe(data, step=64) if pipe else io.BytesIO(data))
    try:
        decoded = _read(source)
    except BitstreamError as err:
        assert "\n" not in str(err)
        return err
    else:
        assert decoded == original
        return None
    finally:
        # The reader goes front to back: no byte twice, and every read but the last returns at
        # least one. A reader that looped on a damaged length (seeking back, or reading on at
        # the end) would break these bounds.
        assert source.bytes_read <= len(data) and source.reads <= len(data) + 1


def test_every_truncation_is_an_error(sample):
    header, records, data = sample
    for cut in range(len(data)):
        assert _check_damaged(data[:cut], (header, records), pipe=cut % 2 == 1) is not None


def test_random_byte_mutations(sample):
    header, records, data = sample
    rng = np.random.default_rng(0)
    frames_named = set()
    for k in range(MUTATIONS):
        mutated = bytearray(data)
        position = int(rng.integers(len(data)))
        mutated[position] = (mutated[position] + int(rng.integers(1, 256))) % 256
        error = _check_damaged(bytes(mutated), (header, records), pipe=k % 5 == 0)
        # Every byte is under a CRC, so no single-byte change may pass unnoticed.
        assert error is not None, position
        frames_named.add(error.frame)
    assert frames_named == {None, 0, 1, 2, 3, 4, 5}  # 5: the end record


def test_huge_lengths_are_rejected_before_allocating(sample):
    header, _, data = sample
    head = encode_header(header)
    cases = {
        "beyond the bound": bytes([1]) + encode_varint(2**60),
        "within the bound, pipe": bytes([1]) + encode_varint(header.max_payload) + b"\0" * 10,
        "header length": b"CVC\x01" + encode_varint(2**50),
    }
    for name, tail in cases.items():
        stream = tail if name == "header length" else head + tail
        for source in (io.BytesIO(stream), _Pipe(stream, step=4096)):
            tracemalloc.start()
            with pytest.raises(BitstreamError):
                _read(source)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 2 * READ_CHUNK + (1 << 20), name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"RIFF1234", "not a .cvc file"),
        (b"CVC\x05", "unsupported .cvc version 5"),
    ],
)
def test_clear_messages(data, message):
    with pytest.raises(BitstreamError, match=message):
        _read(io.BytesIO(data))


def test_error_names_the_frame(sample):
    _, _, data = sample
    info = describe(io.BytesIO(data))
    offset = info["totals"]["header_bytes"] + sum(f["bytes"] for f in info["frames"][:3]) + 5
    mutated = bytearray(data)
    mutated[offset] ^= 0x40
    with pytest.raises(BitstreamError, match=r"^frame 3: ") as caught:
        _read(io.BytesIO(bytes(mutated)))
    assert caught.value.frame == 3


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canfvc_codec", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_cli_info_on_good_and_damaged_files(sample, tmp_path):
    _, records, data = sample
    good = tmp_path / "good.cvc"
    good.write_bytes(data)
    result = _cli("info", str(good), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["frames"]) == len(records)
    assert _cli("info", str(good)).returncode == 0

    rng = np.random.default_rng(1)
    damaged = [data[: int(rng.integers(len(data)))] for _ in range(3)]
    for _ in range(3):
        mutated = bytearray(data)
        mutated[int(rng.integers(len(data)))] ^= 1 + int(rng.integers(255))
        damaged.append(bytes(mutated))
    for k, content in enumerate(damaged):
        path = tmp_path / f"bad{k}.cvc"
        path.write_bytes(content)
        result = _cli("info", str(path))
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("canfvc: ")
