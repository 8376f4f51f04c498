"""Named pipes and devices: outputs that are streams (/dev/null, named pipes) are written in
place, never replaced by a regular file, and other special files are refused; a named pipe
carrying Y4M is read as a stream."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from canfvc_codec.errors import InputError, OutputError
from canfvc_codec.io import AtomicOutput, open_reader, open_writer
from canfvc_codec.io.output import check_output_path
from tests.test_io_yuv import info_for, random_frames, same, write_all

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")


def _read_in_background(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """A reader for the named pipe ``path``: its open lets the writer's open return."""
    received: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as pipe:
            received.append(pipe.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, received


def test_dev_null_is_written_in_place_without_overwrite():
    with AtomicOutput(os.devnull, overwrite=False) as out:
        out.write(b"stream")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # still the device, not a renamed file


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_one_clear_error():
    with pytest.raises(OutputError, match="/dev/full: .*No space left on device"):
        with AtomicOutput("/dev/full", overwrite=False) as out:
            out.write(b"x")
            out.flush()


def test_a_device_without_a_format_in_its_name_gets_y4m(tmp_path):
    pipe = tmp_path / "video"  # like /dev/null: no extension to say the format
    os.mkfifo(pipe)
    thread, received = _read_in_background(pipe)
    with open_writer(str(pipe), info_for()) as writer:
        writer.write(random_frames(1)[0])
    thread.join(timeout=30)
    assert received[0].startswith(b"YUV4MPEG2 W64 H48 ")


def test_a_named_pipe_gets_the_video_and_stays_a_pipe(tmp_path):
    pipe = tmp_path / "rec.yuv"
    os.mkfifo(pipe)
    thread, received = _read_in_background(pipe)
    frames = random_frames(2)
    with open_writer(str(pipe), info_for()) as writer:
        for frame in frames:
            writer.write(frame)
    thread.join(timeout=30)
    assert stat.S_ISFIFO(pipe.stat().st_mode) and sorted(os.listdir(tmp_path)) == ["rec.yuv"]
    copy = tmp_path / "copy_64x48.yuv"
    copy.write_bytes(received[0])
    with open_reader(str(copy)) as reader:
        assert all(map(same, frames, reader))


def test_a_failed_write_to_a_pipe_removes_nothing(tmp_path):
    pipe = tmp_path / "out.cvc"
    os.mkfifo(pipe)
    thread, received = _read_in_background(pipe)
    with pytest.raises(RuntimeError):
        with AtomicOutput(pipe, overwrite=False) as out:
            out.write(b"partial")
            raise RuntimeError("stopped")
    thread.join(timeout=30)
    assert stat.S_ISFIFO(pipe.stat().st_mode) and received == [b"partial"]


def test_other_special_files_are_refused(tmp_path):
    path = tmp_path / "socket"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(OutputError, match="not a regular file"):
            check_output_path(path, overwrite=True)
    finally:
        server.close()


def _write_in_background(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as pipe:
            pipe.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_named_pipe_carrying_y4m_is_read_as_a_stream(tmp_path):
    source = tmp_path / "clip.y4m"
    frames = random_frames(3)
    write_all(source, frames, info_for())
    pipe = tmp_path / "pipe.y4m"
    os.mkfifo(pipe)
    thread = _write_in_background(pipe, source.read_bytes())
    with open_reader(str(pipe)) as reader:
        assert reader.info.frame_count is None  # a stream: its length is unknown
        assert all(map(same, frames, reader))
    thread.join(timeout=30)


def test_a_named_pipe_of_raw_frames_is_refused(tmp_path):
    pipe = tmp_path / "pipe_64x48.yuv"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match="a named pipe must carry Y4M"):
        open_reader(str(pipe))
