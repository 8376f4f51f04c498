"""The command line around video I/O: help, errors (message, exit status, no partial output),
pipes, and encode/decode round trips through a stand-in engine that stores frames losslessly.

The stand-in replaces ``canfvc_codec.codec`` so that these tests exercise the command line and
the readers and writers only, whatever state the real engine is in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from canfvc_codec import cli, device
from canfvc_codec import threads as canfvc_threads
from canfvc_codec.cli import main
from canfvc_codec.encoder.presets import MAX_REFINE_STEPS
from canfvc_codec.io import open_reader
from tests.test_io_yuv import info_for, random_frames, same, write_all

W, H = 64, 48
FRAME_BYTES = W * H * 3 // 2

FAKE_ENGINE = """
import os

from canfvc_codec.errors import CanfvcError
from canfvc_codec.io.frame import frame_to_bytes
from canfvc_codec.io.y4m import Y4MReader, format_header

MAGIC = b"CVC-FAKE\\n"
OPTIONS = []  # every encode's EncodeOptions, for the tests to read
FAIL_AFTER = int(os.environ.get("FAKE_FAIL_AFTER", "-1"))
INTERRUPT = os.environ.get("FAKE_INTERRUPT") == "1"
READY = os.environ.get("FAKE_READY")  # with FAIL_AFTER: touch this file there, then hang


def _maybe_fail(count):
    if count == FAIL_AFTER:
        if READY:
            import time

            open(READY, "w").close()
            time.sleep(600)
        if INTERRUPT:
            raise KeyboardInterrupt
        raise CanfvcError("fake engine failure")


def encode_video(reader, output, options, *, recon=None, progress=True):
    OPTIONS.append(options)
    output.write(MAGIC + format_header(reader.info))
    count = 0
    for frame in reader:
        _maybe_fail(count)
        output.write(b"FRAME\\n" + frame_to_bytes(frame, reader.info))
        if recon is not None:
            recon.write(frame)
        count += 1
    per_frame = [{"type": "P" if k else "I", "bytes": 100 + k, "psnr": 40.0} for k in range(count)]
    return {
        "frames": count,
        "lambda": options.lmbda,
        "motion_lambda": options.motion_lmbda,
        "per_frame": per_frame,
    }


def decode_video(
    source, open_output, *, device="auto", model=None, progress=True, start=0, frames=None,
    numerics=None,
):
    if source.read(len(MAGIC)) != MAGIC:
        raise CanfvcError("not a stand-in stream")
    reader = Y4MReader(source, "stream", owns_stream=False)
    count = 0
    with open_output(reader.info) as writer:
        for index, frame in enumerate(reader):
            if index < start or count == frames:
                continue
            _maybe_fail(count)
            writer.write(frame)
            count += 1
    return {"frames": count}
"""

# The stand-in's streams are no .cvc containers: the command line's check of a stream's records
# before decoding is the real engine's business, and is skipped with it.
BOOTSTRAP = (
    "import sys, types\n"
    "module = types.ModuleType('canfvc_codec.codec')\n"
    "sys.modules['canfvc_codec.codec'] = module\n"
    f"exec({FAKE_ENGINE!r}, module.__dict__)\n"
    "from canfvc_codec import cli\n"
    "cli._check_stream_whole = lambda handle: None\n"
    "cli.main(sys.argv[1:])\n"
)
REPO = Path(__file__).resolve().parents[1]


def canfvc(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, cwd=None):
    """Run the command line in a fresh interpreter with the stand-in engine."""
    return subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
        timeout=120,
    )


@pytest.fixture
def fake_engine(monkeypatch):
    module = types.ModuleType("canfvc_codec.codec")
    monkeypatch.setitem(sys.modules, "canfvc_codec.codec", module)
    monkeypatch.setattr(cli, "_check_stream_whole", lambda handle: None)
    exec(FAKE_ENGINE, module.__dict__)
    return module


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.y4m"
    write_all(path, random_frames(4), info_for())
    return path


def frames_of(path, **options):
    with open_reader(str(path), **options) as reader:
        return list(reader)


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["Commands:", "encode", "decode", "info", "Examples:"]),
        (["encode"], ["Output:", "Coding:", "Input:", "--lambda L", "--gop G", "Examples:"]),
        (["decode"], ["Output:", "Decoding:", "--device", "rec_%04d.png", "Examples:"]),
        (["info"], ["--json", "--model NAME", "Examples:"]),
    ],
)
def test_help_reads_like_a_codec(capsys, args, expected):
    code, out, _ = run_main(capsys, *args, "--help")
    assert code == 0
    for text in expected:
        assert text in out


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.startswith("canfvc ")


# ----------------------------------------------------------------------------- errors


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


ERROR_CASES = {
    "missing file": (lambda d: d / "missing.y4m", 1, "missing.y4m: no such file"),
    "not whole frames": (
        lambda d: _write(d / "c_64x48.yuv", bytes(FRAME_BYTES + 1)),
        1,
        "is not a whole number of 64x48 8-bit 4:2:0 frames",
    ),
    "unknown size": (lambda d: _write(d / "c.yuv", bytes(FRAME_BYTES)), 2, "unknown frame size"),
    "odd dimensions": (
        lambda d: _write(d / "c_63x48.yuv", bytes(100)),
        1,
        "odd dimensions 63x48 are not supported",
    ),
    "bad y4m header": (
        lambda d: _write(d / "c.y4m", b"YUV4MPEG2 W64 Hx\n"),
        1,
        "bad Y4M header: Hx",
    ),
    "unsupported pixel format": (
        lambda d: _write(d / "c.y4m", b"YUV4MPEG2 W64 H48 C444\n"),
        1,
        "unsupported pixel format C444",
    ),
}


@pytest.mark.parametrize("command", ["encode", "info"])
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_input_errors(tmp_path, capsys, fake_engine, command, case):
    make, status, message = ERROR_CASES[case]
    source = make(tmp_path)
    before = set(tmp_path.iterdir())
    args = [command, str(source)] + (
        ["-o", str(tmp_path / "out.cvc")] if command == "encode" else []
    )
    code, out, err = run_main(capsys, *args)
    assert code == status
    assert err.startswith("canfvc: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert set(tmp_path.iterdir()) == before  # nothing written, not even a temporary file


def test_existing_output(tmp_path, capsys, fake_engine, clip):
    out = _write(tmp_path / "out.cvc", b"old")
    recon = _write(tmp_path / "rec.yuv", b"old")
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(out))
    assert (
        code == 1 and err == f"canfvc: {out}: already exists (use -y/--overwrite to replace it)\n"
    )
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(tmp_path / "new.cvc"),
                            "--recon", str(recon))  # fmt: skip
    assert code == 1 and "rec.yuv: already exists" in err
    assert out.read_bytes() == b"old" and recon.read_bytes() == b"old"
    assert not (tmp_path / "new.cvc").exists()
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(out), "-y", "-q")
    assert code == 0 and err == ""
    assert out.read_bytes().startswith(b"CVC-FAKE")


def test_output_errors(tmp_path, capsys, fake_engine, clip):
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(tmp_path / "out.yuv"))
    assert code == 2 and "-o takes the .cvc bitstream" in err
    stream = tmp_path / "s.cvc"
    assert run_main(capsys, "encode", str(clip), "-o", str(stream), "-q")[0] == 0
    for target, message in [("rec.avi", "unsupported output format"), ("rec.png", "pattern")]:
        code, _, err = run_main(capsys, "decode", str(stream), "-o", str(tmp_path / target))
        assert code == 1 and message in err
    code, _, err = run_main(capsys, "decode", str(stream), "-o", str(tmp_path / "no/dir/r.y4m"))
    assert code == 1 and "does not exist" in err
    (tmp_path / "folder").mkdir()
    code, _, err = run_main(capsys, "decode", str(stream), "-o", str(tmp_path / "folder"))
    assert code == 1 and "folder: is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.y4m", "folder", "s.cvc"]
    assert not any((tmp_path / "folder").iterdir())


def test_a_missing_dependency_is_one_line_naming_it(tmp_path, capsys, monkeypatch, clip):
    monkeypatch.delitem(sys.modules, "canfvc_codec.codec", raising=False)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails as if not installed
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(tmp_path / "o.cvc"))
    assert code == 1
    assert err == (
        "canfvc: missing dependency: the Python package 'tqdm' is not installed "
        "(installing canfvc with pip installs every package it needs)\n"
    )
    assert not (tmp_path / "o.cvc").exists()
    # A missing part of canfvc itself is a broken installation: shown as it is, not hidden.
    monkeypatch.setitem(sys.modules, "canfvc_codec.codec", None)
    with pytest.raises(ModuleNotFoundError):
        main(["encode", str(clip), "-o", str(tmp_path / "o.cvc")])


def test_usage_errors_exit_2(capsys, clip):
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--size", "big")
    assert code == 2 and "Invalid value for '--size'" in err
    code, _, err = run_main(capsys, "info")
    assert code == 2 and "missing FILE" in err
    for value in ("fast", "-3", "0"):
        code, _, err = run_main(
            capsys, "encode", str(clip), "-o", "x.cvc", "--motion-lambda", value
        )
        assert code == 2 and "Invalid value for '--motion-lambda'" in err
    assert not Path("x.cvc").exists()


def test_motion_lambda_reaches_the_encoder(tmp_path, capsys, fake_engine, clip):
    for value, expected in (("auto", "None"), ("300", "300")):
        out = tmp_path / f"{value}.cvc"
        code, _, err = run_main(
            capsys, "encode", str(clip), "-o", str(out), "--motion-lambda", value
        )
        assert code == 0 and f"motion_lambda={expected}" in err


def test_intra_lambda_reaches_the_encoder(tmp_path, capsys, fake_engine, clip):
    for value, expected in (("auto", None), ("3000", 3000.0)):
        out = tmp_path / f"{value}.cvc"
        code, _, _ = run_main(capsys, "encode", str(clip), "-o", str(out), "--intra-lambda", value)
        assert code == 0 and fake_engine.OPTIONS[-1].intra_lmbda == expected
    for value in ("best", "0"):
        code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--intra-lambda", value)
        assert code == 2 and "Invalid value for '--intra-lambda'" in err


def test_refinement_steps_reach_the_encoder(tmp_path, capsys, fake_engine, clip):
    """A preset's steps, I-frames then P-frames; an option given overrides the preset's."""
    for number, (flags, expected) in enumerate(
        (
            ((), (0, 0)),
            (("--refine", "12"), (12, 12)),  # P-frames as I-frames
            (("--refine", "12", "--refine-inter", "0"), (12, 0)),
            (("--preset", "slow"), (12, 0)),
            (("--preset", "slower"), (12, 4)),
            (("--preset", "veryslow"), (12, 12)),
            (("--preset", "slow", "--refine", "4"), (4, 4)),
            (("--preset", "slower", "--refine-inter", "2"), (12, 2)),
            (("--preset", "medium", "--refine-inter", "3"), (0, 3)),
        )
    ):
        out = tmp_path / f"{number}.cvc"
        assert run_main(capsys, "encode", str(clip), "-o", str(out), *flags)[0] == 0
        options = fake_engine.OPTIONS[-1]
        assert (options.refine, options.refine_inter) == expected
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--refine-inter", "-1")
    assert code == 2 and "Invalid value for '--refine-inter'" in err
    too_many = str(MAX_REFINE_STEPS + 1)
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--refine", too_many)
    assert code == 2 and "Invalid value for '--refine'" in err and str(MAX_REFINE_STEPS) in err
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--preset", "placebo")
    assert code == 2 and "Invalid value for '--preset'" in err
    assert not Path("x.cvc").exists()


def test_intra_choice_reaches_the_encoder(tmp_path, capsys, fake_engine, clip):
    for flags, expected in (((), "run"), (("--intra-choice", "frame"), "frame")):
        out = tmp_path / f"{len(flags)}.cvc"
        assert run_main(capsys, "encode", str(clip), "-o", str(out), *flags)[0] == 0
        assert fake_engine.OPTIONS[-1].intra_choice == expected
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--intra-choice", "gop")
    assert code == 2 and "Invalid value for '--intra-choice'" in err
    assert not Path("x.cvc").exists()


def test_intra_coder_reaches_the_encoder(tmp_path, capsys, fake_engine, clip):
    for flags, expected in (((), "anfic"), (("--intra-coder", "hevc"), "hevc")):
        out = tmp_path / f"{len(flags)}.cvc"
        assert run_main(capsys, "encode", str(clip), "-o", str(out), *flags)[0] == 0
        assert fake_engine.OPTIONS[-1].intra_coder == expected
    code, _, err = run_main(capsys, "encode", str(clip), "-o", "x.cvc", "--intra-coder", "bpg")
    assert code == 2 and "Invalid value for '--intra-coder'" in err
    assert not Path("x.cvc").exists()


def test_encode_writes_per_frame_statistics(tmp_path, capsys, fake_engine, clip):
    stats = tmp_path / "stats.csv"
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(tmp_path / "a.cvc"),
                            "--csv", str(stats))  # fmt: skip
    assert code == 0, err
    assert stats.read_text().splitlines() == [
        "frame,type,bytes,psnr_rgb",
        "0,I,100,40.0000",
        "1,P,101,40.0000",
        "2,P,102,40.0000",
        "3,P,103,40.0000",
    ]
    # An existing statistics file stops the encode before it starts, as any output does.
    code, _, err = run_main(capsys, "encode", str(clip), "-o", str(tmp_path / "b.cvc"),
                            "--csv", str(stats))  # fmt: skip
    assert code == 1 and "stats.csv: already exists" in err
    assert not (tmp_path / "b.cvc").exists()


def test_encode_and_decode_to_dev_null(tmp_path, capsys, fake_engine, clip):
    """As with x265, `-o /dev/null` measures an encode (or a decode) without keeping it."""
    code, _, err = run_main(capsys, "encode", str(clip), "-o", os.devnull)
    assert code == 0 and "frames=4" in err
    stream = tmp_path / "clip.cvc"
    assert run_main(capsys, "encode", str(clip), "-o", str(stream))[0] == 0
    code, _, err = run_main(capsys, "decode", str(stream), "-o", os.devnull)
    assert code == 0 and "frames=4" in err


def test_threads_reach_the_engine(tmp_path, capsys, fake_engine, clip, monkeypatch):
    threads = []
    monkeypatch.setattr(device, "set_cpu_threads", threads.append)
    monkeypatch.setattr(canfvc_threads, "free_cores", lambda: 5)
    stream = tmp_path / "clip.cvc"
    assert run_main(capsys, "encode", str(clip), "-o", str(stream), "--threads", "3")[0] == 0
    assert run_main(capsys, "decode", str(stream), "-o", str(tmp_path / "d.y4m"))[0] == 0
    assert threads == [3, 5]  # the default: one per free core
    code, _, err = run_main(capsys, "decode", str(stream), "-o", "x.y4m", "--threads", "-1")
    assert code == 2 and "Invalid value for '--threads'" in err


# ----------------------------------------------------------------------------- round trips


def test_encode_decode_round_trip_to_every_format(tmp_path, clip):
    source = frames_of(clip)
    stream = tmp_path / "clip.cvc"
    result = canfvc("encode", str(clip), "-o", str(stream), "--recon", str(tmp_path / "rec.yuv"),
                    "--lambda", "512")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert "frames=4" in result.stderr.decode() and "lambda=512" in result.stderr.decode()
    assert all(map(same, source, frames_of(tmp_path / "rec.yuv", size=(W, H))))
    for name in ("dec.y4m", "dec.yuv", "dec.mp4", "dec.mkv"):
        result = canfvc("decode", str(stream), "-o", str(tmp_path / name), "-q")
        assert result.returncode == 0, result.stderr.decode()
        decoded = frames_of(tmp_path / name, size=(W, H))
        assert len(decoded) == 4 and all(map(same, source, decoded)), name
    result = canfvc("decode", str(stream), "-o", str(tmp_path / "dec_%02d.png"), "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in tmp_path.glob("dec_*.png")) == [
        f"dec_0{k}.png" for k in (1, 2, 3, 4)
    ]
    assert not list(tmp_path.glob(".*.part"))


def test_decode_a_range(tmp_path, clip):
    stream = tmp_path / "clip.cvc"
    assert canfvc("encode", str(clip), "-o", str(stream), "-q").returncode == 0
    result = canfvc("decode", str(stream), "-o", str(tmp_path / "d.y4m"), "--start", "1",
                    "--frames", "2")  # fmt: skip
    assert result.returncode == 0 and "frames=2" in result.stderr.decode()
    assert all(map(same, frames_of(clip)[1:3], frames_of(tmp_path / "d.y4m")))


def test_pipes_in_and_out(tmp_path, clip):
    """`ffmpeg ... -f yuv4mpegpipe - | canfvc encode - -o -` and `canfvc decode - -o -`."""
    encoded = canfvc("encode", "-", "-o", "-", "--start", "1", "--frames", "2", "-q",
                     stdin=clip.read_bytes())  # fmt: skip
    assert encoded.returncode == 0, encoded.stderr.decode()
    decoded = canfvc("decode", "-", "-o", "-", "-q", stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr.decode()
    (tmp_path / "piped.y4m").write_bytes(decoded.stdout)
    assert all(map(same, frames_of(clip)[1:3], frames_of(tmp_path / "piped.y4m")))
    info = canfvc("info", "-", "--json", stdin=clip.read_bytes())
    assert info.returncode == 0, info.stderr.decode()
    report = json.loads(info.stdout)
    assert (report["format"], report["width"], report["height"]) == ("y4m", W, H)


def test_info_on_a_raw_file(tmp_path, capsys):
    path = tmp_path / "clip_64x48_50fps_10bit.yuv"
    write_all(path, random_frames(3, 10), info_for(10))
    code, out, _ = run_main(capsys, "info", str(path), "--json")
    report = json.loads(out)
    assert code == 0
    assert (report["frames"], report["fps"], report["bit_depth"]) == (3, "50", 10)
    code, out, _ = run_main(capsys, "info", str(path))
    assert code == 0 and "pixel_format: yuv420p10le" in out


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("interrupt", [False, True])
def test_failure_midway_leaves_nothing(tmp_path, clip, interrupt):
    env = {"FAKE_FAIL_AFTER": "2", "FAKE_INTERRUPT": "1" if interrupt else "0"}
    result = canfvc("encode", str(clip), "-o", str(tmp_path / "o.cvc"),
                    "--recon", str(tmp_path / "r.mp4"), env=env)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == (130 if interrupt else 1)
    assert "Traceback" not in err
    if not interrupt:
        assert err == "canfvc: fake engine failure\n"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.y4m"]


def test_terminated_midway_leaves_nothing(tmp_path, clip):
    """`kill` (SIGTERM, as timeout and job schedulers send) cleans up as Ctrl-C does."""
    ready = tmp_path.parent / f"{tmp_path.name}.ready"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_FAIL_AFTER": "2", "FAKE_READY": str(ready)}
    process = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, "encode", str(clip), "-o", str(tmp_path / "o.cvc"),
         "--recon", str(tmp_path / "r.y4m")],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(1200):
            if ready.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "the encode never reached its third frame"
        assert len(list(tmp_path.glob(".*.part"))) == 2  # both outputs under way
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and err.decode() == "canfvc: terminated\n"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.y4m"]


def test_decode_failure_leaves_nothing(tmp_path, clip):
    stream = tmp_path / "s.cvc"
    assert canfvc("encode", str(clip), "-o", str(stream), "-q").returncode == 0
    for target in ("d.y4m", "d_%d.png"):
        result = canfvc("decode", str(stream), "-o", str(tmp_path / target),
                        env={"FAKE_FAIL_AFTER": "2"})  # fmt: skip
        assert result.returncode == 1 and result.stderr == b"canfvc: fake engine failure\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.y4m", "s.cvc"]


def test_broken_pipe(tmp_path):
    """`canfvc decode s.cvc -o - | head -c 100`: one clear line and status 1."""
    long_clip = tmp_path / "long.y4m"
    frames = random_frames(1)
    write_all(long_clip, frames * 400, info_for())  # 1.8 MB: more than a pipe buffer holds
    stream = tmp_path / "s.cvc"
    assert canfvc("encode", str(long_clip), "-o", str(stream), "-q").returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, "decode", str(stream), "-o", "-", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout.read(100).startswith(b"YUV4MPEG2")
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err == b"canfvc: output pipe closed before the video was complete (broken pipe)\n"


def test_no_traceback_for_a_damaged_stream(tmp_path):
    stream = _write(tmp_path / "s.cvc", b"CVC-FAKE\nYUV4MPEG2 W64 H48\nFRAME\n" + bytes(10))
    result = canfvc("decode", str(stream), "-o", str(tmp_path / "d.y4m"))
    assert result.returncode == 1
    assert result.stderr == b"canfvc: stream: frame 0 is truncated\n"
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["s.cvc"])
