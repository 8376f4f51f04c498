"""Hostile input at the command line: one clear line on stderr, a non-zero status, nothing left.

Most cases run the CLI in-process (``cli.main``), as a user's shell would see it; a sample runs
``python -m canfvc_codec`` in a subprocess, where a traceback or a crash could not hide.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canfvc_codec.bitstream import TYPE_END, CvcReader, encode_header, encode_record
from canfvc_codec.cli import main
from canfvc_codec.codec import encode_video
from canfvc_codec.defaults import NUMERIC_PATH_ENV
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from tests.conftest import real_yuv_frames, rewritten_header

REPO = Path(__file__).resolve().parents[1]
MODEL = "random-tiny"
SUBPROCESS_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> bytes:
    """A real two-frame stream (I, P) of 64x64 frames."""
    tmp = tmp_path_factory.mktemp("stream")
    info = VideoInfo(64, 64, 25, 1, 8, "bt709", False, 2)
    with open_writer(str(tmp / "clip.y4m"), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 100, 2, 64, 64):
            writer.write(Frame(y, u, v))
    sink = io.BytesIO()
    with open_reader(str(tmp / "clip.y4m")) as reader:
        options = EncodeOptions(gop=0, adaptive_intra=False, model=MODEL, device="cpu")
        encode_video(reader, sink, options, progress=False)
    return sink.getvalue()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


# Random (untrained) models announce themselves on stderr; that line is not the error.
UNTRAINED_WARNING = "untrained model: output quality is meaningless"


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if UNTRAINED_WARNING not in line]


def _assert_one_clear_line(code: int, err: str, expected: str) -> None:
    lines = _error_lines(err)
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("canfvc: ") and err.endswith("\n"), err
    assert "Traceback" not in err and expected in lines[0], err


def _decode_cases(stream: bytes) -> dict[str, tuple[bytes, str]]:
    middle = len(stream) // 2
    flipped = bytearray(stream)
    flipped[middle] ^= 0x10
    return {
        "empty": (b"", "in.cvc: empty file (no .cvc stream)"),
        "signature only": (stream[:4], "truncated header length"),
        "truncated header": (stream[:20], "truncated"),
        "truncated frame": (stream[:middle], "truncated"),
        "missing end record": (
            stream[:-1],
            "in.cvc: the stream ends after its 2 frames without the end record",
        ),
        "flipped bit": (bytes(flipped), "CRC mismatch"),
        "not a cvc": (b"YUV4MPEG2 W64 H64 F25:1\n" + bytes(100), "in.cvc: not a .cvc file"),
        "huge size": (rewritten_header(stream, width=16384, height=16384), "GiB to decode"),
        "odd size": (rewritten_header(stream, width=63), "frame size 63x64 is not even"),
        "huge frame count": (
            rewritten_header(stream, frame_count=2**32 - 1),
            "end of stream after 2",
        ),
        "unknown model": (rewritten_header(stream, model_id=bytes(8)), "no model with id"),
    }


CASES = [
    "empty",
    "signature only",
    "truncated header",
    "truncated frame",
    "missing end record",
    "flipped bit",
    "not a cvc",
    "huge size",
    "odd size",
    "huge frame count",
    "unknown model",
]


@pytest.mark.parametrize("case", CASES)
def test_decode_hostile_streams(tmp_path, capsys, stream, case):
    cases = _decode_cases(stream)
    assert sorted(cases) == sorted(CASES)
    data, expected = cases[case]
    source = tmp_path / "in.cvc"
    source.write_bytes(data)
    code, out, err = _run(capsys, "decode", str(source), "-o", str(tmp_path / "out.y4m"), "-q")
    _assert_one_clear_line(code, err, expected)
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["in.cvc"]


def test_wrong_model_given(tmp_path, capsys, stream):
    source = tmp_path / "in.cvc"
    source.write_bytes(stream)
    code, _, err = _run(capsys, "decode", str(source), "-o", str(tmp_path / "o.yuv"),
                        "--model", "random-lite", "-q")  # fmt: skip
    _assert_one_clear_line(code, err, "the file was encoded with model")
    code, _, err = _run(capsys, "decode", str(source), "-o", str(tmp_path / "o.yuv"),
                        "--model", "no-such-model", "-q")  # fmt: skip
    _assert_one_clear_line(code, err, "model 'no-such-model' not found")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("stream.cvc", None, "s.cvc: a canfvc stream (.cvc), not a video: decode it"),
        ("disguised.y4m", None, "disguised.y4m: a canfvc stream (.cvc), not a video: decode it"),
        ("empty.y4m", b"", "empty.y4m"),
        ("empty.mp4", b"", "empty.mp4"),
    ],
)
def test_encode_hostile_inputs(tmp_path, capsys, stream, name, content, expected):
    source = tmp_path / name
    source.write_bytes(stream if content is None else content)
    if name == "stream.cvc":
        source = source.rename(tmp_path / "s.cvc")
    code, _, err = _run(capsys, "encode", str(source), "-o", str(tmp_path / "out.cvc"), "-q",
                        "--model", MODEL)  # fmt: skip
    _assert_one_clear_line(code, err, expected)
    assert not (tmp_path / "out.cvc").exists()


def test_unknown_numeric_path_is_a_usage_error(tmp_path, capsys, stream, monkeypatch):
    source = tmp_path / "in.cvc"
    source.write_bytes(stream)
    monkeypatch.setenv(NUMERIC_PATH_ENV, "abacus")
    code, _, err = _run(capsys, "decode", str(source), "-o", str(tmp_path / "o.yuv"), "-q")
    _assert_one_clear_line(code, err, "unknown numeric path 'abacus'")
    assert code == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "Missing argument 'INPUT'"),
        (("--lambda", "nan"), "Invalid value for '--lambda'"),
        (("--lamda", "3"), "No such option '--lamda'"),
        (("--threads", "100000"), "Invalid value for '--threads'"),
        (("--intra-choice", "best"), "Invalid value for '--intra-choice'"),
    ],
)
def test_command_line_mistakes_are_one_line(tmp_path, capsys, args, expected):
    """A mistake on the command line is one line naming it and the command's help, status 2."""
    source = tmp_path / "in.y4m"
    source.write_bytes(b"")
    inputs = (str(source), "-o", str(tmp_path / "out.cvc")) if args else ()
    code, _, err = _run(capsys, "encode", *inputs, *args)
    _assert_one_clear_line(code, err, expected)
    assert code == 2 and "(see 'canfvc encode --help')" in err
    assert not (tmp_path / "out.cvc").exists()


def test_unknown_command_is_one_line_and_no_command_is_the_help(capsys):
    code, _, err = _run(capsys, "frobnicate")
    _assert_one_clear_line(code, err, "No such command 'frobnicate'")
    code, _, err = _run(capsys)
    assert code == 2 and "Commands:" in err and "encode" in err


# ----------------------------------------------------------------------------- subprocesses


def _canfvc(*args: str, stdout=subprocess.PIPE, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "canfvc_codec", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", **(env or {})},
        timeout=SUBPROCESS_TIMEOUT_S,
        cwd=REPO,
    )


def test_subprocess_sample_of_damaged_streams(tmp_path, stream):
    """Latent bytes replaced by garbage under valid CRCs, decoded by the real command under
    another numeric path: one line naming the frame, status 1, no output left behind."""
    reader = CvcReader(io.BytesIO(stream))
    records = list(reader)
    records[1].streams[3] = bytes(reversed(records[1].streams[3])) + b"\x55" * 7
    damaged = encode_header(reader.header) + b"".join(
        encode_record(r, reader.header.max_payload) for r in records
    ) + bytes([TYPE_END])  # fmt: skip
    (tmp_path / "bad.cvc").write_bytes(damaged)
    bad = _canfvc("decode", str(tmp_path / "bad.cvc"), "-o", str(tmp_path / "bad.y4m"), "-q",
                  env={NUMERIC_PATH_ENV: "channels-last"})  # fmt: skip
    _assert_one_clear_line(bad.returncode, bad.stderr.decode(), "canfvc: frame 1: ")
    assert bad.returncode == 1 and not (tmp_path / "bad.y4m").exists()


def test_closed_stdout(tmp_path, stream):
    (tmp_path / "s.cvc").write_bytes(stream)
    script = f"exec {sys.executable} -m canfvc_codec decode {tmp_path / 's.cvc'} -o - -q >&-"
    done = subprocess.run(
        ["sh", "-c", script],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"},
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    _assert_one_clear_line(done.returncode, done.stderr.decode(), "canfvc: ")
    assert done.returncode == 1
