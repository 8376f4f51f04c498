"""GOP-parallel encoding and decoding (canfvc_codec/parallel.py): the same bytes as the serial
engine, whichever worker finishes first and wherever adaptive I-frames move the chunks."""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from canfvc_codec import parallel
from canfvc_codec.bitstream import (
    INTRA,
    TYPE_END,
    CvcReader,
    FrameRecord,
    encode_header,
    encode_record,
)
from canfvc_codec.cli import main
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.io import Frame, VideoInfo, open_reader
from canfvc_codec.io.color import rgb_to_yuv
from canfvc_codec.numerics import DEFAULT_NUMERICS
from canfvc_codec.parallel import EncodeTask, EncodeWorker, encode_parallel, threads_per_worker
from tests.test_codec import _write_clip

MODEL = "random-tiny"
# A published model: its frame costs, unlike random weights', make adaptive I-frames a mix of I
# and P-frames (lite's on the clip below: IIPIPIPPIP).
TRAINED_MODEL = "lite"
CTRL_C_CLIP_FRAMES = 60
ray_available = importlib.util.find_spec("ray") is not None
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the orchestration


class DriftingEncoder:
    """Frame costs that behave like a video coder's under the real intra schedule ('run'
    choice): a P-frame costs more the further it is from its I-frame and the more the picture
    changed (scene cuts), so adaptive I-frames fall off the GOP grid. Its streams carry the
    schedule's state, so a chunk coded from a wrong start shows in the bytes."""

    device = torch.device("cpu")

    def __init__(self, gop: int) -> None:
        self.schedule = IntraSchedule(gop, adaptive=True)
        self.previous = 0.0

    def encode(self, rgb: torch.Tensor, source: Frame) -> tuple[str, list[bytes], torch.Tensor]:
        level = float(rgb.mean())

        def inter() -> float:
            return 0.2 + 0.15 * (self.schedule.since_intra or 0) + 8 * abs(level - self.previous)

        frame_type, cost = self.schedule.choose(lambda: 1.0, inter, lambda cost: cost)
        self.previous = level
        state = f"{frame_type} {level:.5f} {cost:.5f} {self.schedule.run_cost:.5f}"
        return frame_type, [state.encode()], rgb

    def output_planes(self, rgb: torch.Tensor, info: VideoInfo) -> Frame:
        return rgb_to_yuv(rgb, info)


class DriftingWorker(EncodeWorker):
    def __init__(self, info: VideoInfo, gop: int) -> None:
        encoder = lambda: DriftingEncoder(gop)  # noqa: E731
        self.setup = SimpleNamespace(info=info, numerics=DEFAULT_NUMERICS, encoder=encoder)
        self.source = None
        self.keep_decoded = False


class InlinePool:
    """Runs tasks in this process, the last submitted first, so that chunks come back out of
    order and guesses are still queued when the grid moves."""

    def __init__(self, worker: EncodeWorker, capacity: int) -> None:
        self.worker = worker
        self.workers = self.capacity = capacity
        self.tasks: dict[int, EncodeTask] = {}

    def submit(self, key: int, task: EncodeTask) -> None:
        self.tasks[key] = task

    def cancel(self, key: int) -> bool:
        del self.tasks[key]
        return True

    def in_flight(self) -> set[int]:
        return set(self.tasks)

    def next_result(self) -> parallel.EncodeResult:
        key = list(self.tasks)[-1]
        return self.worker.run(self.tasks.pop(key))

    def close(self, abort: bool) -> None:
        pass


def _scene_clip(path: Path, levels: list[int]) -> VideoInfo:
    """A 16x16 clip whose frame k is flat at luma ``levels[k]``: a change of level is a cut."""
    info = VideoInfo(16, 16, 25, 1, 8, "bt709", False, len(levels))
    from canfvc_codec.io import open_writer

    with open_writer(str(path), info) as writer:
        for level in levels:
            chroma = np.full((8, 8), 128, np.uint8)
            writer.write(Frame(np.full((16, 16), level, np.uint8), chroma, chroma.copy()))
    return info


@pytest.mark.parametrize("capacity", [1, 2, 4])
def test_chunks_guessed_on_the_grid_give_the_serial_stream_when_adaptive_i_frames_move_it(
    tmp_path, monkeypatch, capacity
):
    gop = 5
    levels = [60] * 7 + [150] * 9 + [90] * 3 + [200] * 12 + [40] * 6
    clip = tmp_path / "scenes.y4m"
    info = _scene_clip(clip, levels)
    worker = DriftingWorker(info, gop)
    with open_reader(str(clip)) as reader:
        frames = list(reader)
    serial = worker.run(EncodeTask(0, len(frames), len(frames), frames, last=True))
    serial_types = "".join(record.frame_type for record in serial.records)
    periodic = "".join(INTRA if k % gop == 0 else "P" for k in range(len(levels)))
    assert serial_types != periodic  # adaptive I-frames moved the GOP grid

    monkeypatch.setattr(parallel, "open_pool", lambda *args: InlinePool(worker, capacity))
    options = EncodeOptions(gop=gop, model=MODEL, device="cpu")
    sink = io.BytesIO()
    with open_reader(str(clip)) as reader:
        summary = encode_parallel(reader, sink, options, jobs=capacity, progress=False)
    coded = list(CvcReader(io.BytesIO(sink.getvalue())))
    assert [(r.frame_type, r.streams) for r in coded] == [
        (r.frame_type, r.streams) for r in serial.records
    ]
    assert summary["frames"] == len(levels) and summary["jobs"] == capacity


def test_threads_are_shared_out_unless_set():
    cores = parallel.available_cores()
    assert threads_per_worker(1, 0) == cores
    assert threads_per_worker(cores * 4, 0) == 1
    assert threads_per_worker(2, 3) == 3


# ----------------------------------------------------------------------------- end to end


def _canfvc(*args: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> SimpleNamespace:
    """Ten real frames of bikes (64x64, GOP 3: four chunks, I-frames where the GOP puts them),
    coded and decoded serially."""
    folder = tmp_path_factory.mktemp("serial")
    clip = folder / "clip.y4m"
    _write_clip(clip, 64, 64, 10, start=186)
    common = ("--model", MODEL, "--gop", "3", "--no-adaptive-intra", "--threads", "1", "-q")
    _canfvc(
        "encode", str(clip), "-o", str(folder / "s.cvc"), "--recon", str(folder / "s.yuv"), *common
    )
    _canfvc("decode", str(folder / "s.cvc"), "-o", str(folder / "d.yuv"), "--threads", "1", "-q")
    return SimpleNamespace(clip=clip, folder=folder, common=common)


def test_jobs_2_and_decode_jobs_2_write_the_serial_stream_and_video(serial, tmp_path):
    out = tmp_path / "p.cvc"
    _canfvc(
        "encode", str(serial.clip), "-o", str(out), "--recon", str(tmp_path / "p.yuv"),
        "--jobs", "2", "--chunk-source", "path", *serial.common,
    )  # fmt: skip
    assert out.read_bytes() == (serial.folder / "s.cvc").read_bytes()
    assert (tmp_path / "p.yuv").read_bytes() == (serial.folder / "s.yuv").read_bytes()
    _canfvc(
        "decode", str(out), "-o", str(tmp_path / "d.yuv"), "--jobs", "2", "-q", "--threads", "1"
    )
    assert (tmp_path / "d.yuv").read_bytes() == (serial.folder / "d.yuv").read_bytes()
    # The decoder gives back what the encoder wrote as its reconstruction.
    assert (serial.folder / "d.yuv").read_bytes() == (serial.folder / "s.yuv").read_bytes()


@pytest.mark.slow
def test_adaptive_i_frames_with_jobs_2_decode_to_the_encoders_recon(serial, tmp_path):
    """A trained model with adaptive I-frames (the default) moves I-frames off the GOP grid;
    --jobs 2 writes the serial stream, and the command line's decode with --jobs 2 gives back
    the encoder's --recon byte for byte."""
    common = ("--model", TRAINED_MODEL, "--gop", "3", "--threads", "1", "-q")
    _canfvc("encode", str(serial.clip), "-o", str(tmp_path / "s.cvc"), *common)
    out, recon, decoded = tmp_path / "p.cvc", tmp_path / "p.yuv", tmp_path / "d.yuv"
    _canfvc(
        "encode", str(serial.clip), "-o", str(out), "--recon", str(recon), "--jobs", "2", *common
    )
    types = "".join(record.frame_type for record in CvcReader(io.BytesIO(out.read_bytes())))
    assert "P" in types and any(kind == INTRA and k % 3 for k, kind in enumerate(types)), types
    assert out.read_bytes() == (tmp_path / "s.cvc").read_bytes()
    _canfvc("decode", str(out), "-o", str(decoded), "--jobs", "2", "--threads", "1", "-q")
    assert decoded.read_bytes() == recon.read_bytes()


@pytest.mark.skipif(not ray_available, reason="Ray is not installed (pip install 'canfvc[ray]')")
def test_ray_auto_writes_the_serial_stream(serial, tmp_path):
    out = tmp_path / "r.cvc"
    _canfvc(
        "encode", str(serial.clip), "-o", str(out), "--ray", "auto", "--jobs", "2", *serial.common
    )
    assert out.read_bytes() == (serial.folder / "s.cvc").read_bytes()


def test_chunks_read_from_the_path_need_a_file_not_stdin(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["encode", "-", "-o", str(tmp_path / "x.cvc"), "--jobs", "2", "--chunk-source", "path"]
        )
    assert exit_info.value.code == 2
    assert "canfvc: --chunk-source path: workers cannot read stdin" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_failing_worker_stops_the_decode_and_leaves_no_output(serial, tmp_path, capsys):
    """Frame 7 (the third chunk) claims a reconstruction its streams do not decode to: the
    worker's error is the command's, one line, and no output is left."""
    reader = CvcReader(io.BytesIO((serial.folder / "s.cvc").read_bytes()))
    records = list(reader)
    records[7] = replace(records[7], recon_crc=records[7].recon_crc ^ 1)
    body = b"".join(encode_record(record, reader.header.max_payload) for record in records)
    stream = tmp_path / "damaged.cvc"
    stream.write_bytes(encode_header(reader.header) + body + bytes([TYPE_END]))
    output = tmp_path / "out.yuv"
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", str(stream), "-o", str(output), "--jobs", "2", "-q", "--threads", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("canfvc: frame 7: reconstruction does not match")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["damaged.cvc"]


def test_ctrl_c_stops_the_workers_and_leaves_no_output(tmp_path, tmp_path_factory):
    # Long enough that the workers are still coding when the signal comes, however fast they are.
    clip = tmp_path_factory.mktemp("interrupted") / "clip.y4m"
    _write_clip(clip, 64, 64, CTRL_C_CLIP_FRAMES, start=186)
    out = tmp_path / "i.cvc"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "canfvc_codec", "encode", str(clip), "-o", str(out)]
    command += ["--jobs", "2", "--model", MODEL, "--gop", "3", "--threads", "1"]
    # A shell starts background jobs with Ctrl-C ignored; the encode must not inherit that.
    default_ctrl_c = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, env=env, text=True, preexec_fn=default_ctrl_c
    )
    assert process.stderr is not None
    seen = ""
    while "encode:" not in seen:  # the progress bar: the workers are starting
        text = process.stderr.read(1)
        assert text, f"the encode ended before it started: {seen}"
        seen += text
    time.sleep(1.0)  # the workers are up and coding when the signal comes
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert not list(tmp_path.iterdir())


def test_decode_tasks_are_whole_runs_and_stop_at_the_frames_wanted():
    types = "IPPIPIPPPIPIP"
    records = [(k, FrameRecord(t, [], 0), k >= 1) for k, t in enumerate(types)]
    tasks = list(parallel._decode_tasks(iter(records), task_frames=3, frames=None))
    assert ["".join(r.frame_type for _, r, _ in task.records) for task in tasks] == [
        "IPP", "IPIPPP", "IPIP"
    ]  # fmt: skip
    assert [task.sequence for task in tasks] == [0, 1, 2]
    tasks = list(parallel._decode_tasks(iter(records), task_frames=3, frames=4))
    assert [index for task in tasks for index, _, _ in task.records] == [0, 1, 2, 3, 4]


def test_ray_without_ray_installed_is_one_line_and_no_output(serial, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "encode",
                str(serial.clip),
                "-o",
                str(tmp_path / "x.cvc"),
                "--ray",
                "auto",
                *serial.common,
            ]
        )
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "canfvc: --ray needs Ray: pip install 'canfvc[ray]'"
    )
    assert not list(tmp_path.iterdir())
