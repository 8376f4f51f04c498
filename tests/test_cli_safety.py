"""Nothing the user had is ever lost: outputs that are inputs or each other are refused before
any work, a run's outputs appear together or not at all, closed standard streams are one clear
line, and the messages say what is wrong.

Each case asserts the exit status, the one line on stderr, and that every file that was there
before is byte-identical afterwards. The coding engine is the lossless stand-in of
``tests/test_cli_io.py``, so that only the command line and the I/O are under test.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from canfvc_codec.io.ffmpeg import ffmpeg_exe
from canfvc_codec.io.output import AtomicOutput, OutputGroup
from tests.test_cli_io import BOOTSTRAP, REPO, canfvc, clip, fake_engine, run_main  # noqa: F401
from tests.test_io_yuv import info_for, random_frames, write_all

SUBPROCESS_TIMEOUT_S = 120


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links followed) and its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_refused(code: int, err: str, status: int, message: str) -> None:
    lines = err.splitlines()
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("canfvc: ") and message in lines[0], err


@pytest.fixture
def stream(tmp_path, capsys, fake_engine, clip) -> Path:  # noqa: F811
    path = tmp_path / "s.cvc"
    assert run_main(capsys, "encode", str(clip), "-o", str(path), "-q")[0] == 0
    return path


# ----------------------------------------------------------------------------- the same file


@pytest.mark.parametrize("overwrite", [[], ["-y"]])
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--recon", "--recon {0} would write over the input {0} (the same file)"),
        ("--csv", "--csv {0} would write over the input {0} (the same file)"),
    ],
)
def test_encode_refuses_an_output_that_is_the_input(
    tmp_path,
    capsys,
    fake_engine,  # noqa: F811
    clip,  # noqa: F811
    option,
    message,
    overwrite,
):
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "o.cvc"), option, str(clip), *overwrite
    )
    assert_refused(code, err, 2, message.format(clip))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_a_link_to_the_input_is_the_input(tmp_path, capsys, fake_engine, clip, link):  # noqa: F811
    alias = tmp_path / "alias.y4m"
    if link == "hard":
        os.link(clip, alias)
    else:
        alias.symlink_to(clip)
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "o.cvc"), "--recon", str(alias), "-y"
    )
    assert_refused(code, err, 2, f"--recon {alias} would write over the input {clip}")
    assert snapshot(tmp_path) == before
    assert alias.is_symlink() == (link == "symbolic")


def test_decode_refuses_to_write_over_its_stream(tmp_path, capsys, stream):
    bits = stream.rename(tmp_path / "bits.yuv")  # a stream under a video's name
    before = snapshot(tmp_path)
    code, _, err = run_main(capsys, "decode", str(bits), "-o", str(bits), "-y")
    assert_refused(code, err, 2, f"-o {bits} would write over the input {bits}")
    assert snapshot(tmp_path) == before


def test_a_symbolic_link_in_the_folder_path_is_seen_through(tmp_path, capsys, stream):
    (tmp_path / "via").symlink_to(tmp_path, target_is_directory=True)
    alias = tmp_path / "via" / stream.name
    before = snapshot(tmp_path / "via")
    code, _, err = run_main(capsys, "decode", str(stream), "-o", str(alias), "-y")
    # A .cvc name is no video format; the identity check comes first, whatever the name.
    assert_refused(code, err, 2, "would write over the input")
    assert snapshot(tmp_path / "via") == before


@pytest.mark.parametrize("overwrite", [[], ["-y"]])
@pytest.mark.parametrize(
    ("first", "second", "name"),
    [("-o", "--csv", "dup.cvc"), ("--recon", "--csv", "d2.yuv")],
)
def test_two_outputs_with_one_name_are_refused(
    tmp_path,
    capsys,
    fake_engine,  # noqa: F811
    clip,  # noqa: F811
    first,
    second,
    name,
    overwrite,
):
    target = tmp_path / name
    args = {"-o": str(tmp_path / "o.cvc"), first: str(target), second: str(target)}
    before = snapshot(tmp_path)
    options = [item for pair in args.items() for item in pair]
    code, _, err = run_main(capsys, "encode", str(clip), *options, *overwrite)
    assert_refused(code, err, 2, f"{first} {target} and {second} {target} are the same file")
    assert snapshot(tmp_path) == before


def test_an_existing_output_under_two_names_is_refused(tmp_path, capsys, fake_engine, clip):  # noqa: F811
    (tmp_path / "old.cvc").write_bytes(b"the user's bitstream")
    os.link(tmp_path / "old.cvc", tmp_path / "old.csv")
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "old.cvc"),
        "--csv", str(tmp_path / "old.csv"), "-y",
    )  # fmt: skip
    assert_refused(code, err, 2, "are the same file")
    assert snapshot(tmp_path) == before


def test_a_picture_of_the_pattern_named_as_another_output_is_refused(
    tmp_path,
    capsys,
    fake_engine,  # noqa: F811
    clip,  # noqa: F811
):
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "o.cvc"),
        "--recon", str(tmp_path / "r_%04d.png"), "--csv", str(tmp_path / "r_0003.png"),
    )  # fmt: skip
    assert_refused(code, err, 2, "are the same file")
    assert snapshot(tmp_path) == before


def test_an_input_picture_of_the_recon_pattern_is_refused(
    tmp_path,
    capsys,
    fake_engine,  # noqa: F811
    clip,  # noqa: F811
):
    picture = tmp_path / "r_0002.png"
    picture.write_bytes(b"a picture the user has")
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "encode", str(picture), "-o", str(tmp_path / "o.cvc"),
        "--recon", str(tmp_path / "r_%04d.png"), "-y",
    )  # fmt: skip
    assert_refused(code, err, 2, f"would write over the input {picture}")
    assert snapshot(tmp_path) == before


def test_an_existing_picture_of_the_pattern_is_found_before_decoding(tmp_path, capsys, stream):
    (tmp_path / "r_0002.png").write_bytes(b"a picture the user has")
    before = snapshot(tmp_path)
    code, _, err = run_main(capsys, "decode", str(stream), "-o", str(tmp_path / "r_%04d.png"))
    assert_refused(code, err, 1, "r_0002.png: already exists (use -y/--overwrite")
    assert "frames=" not in err and snapshot(tmp_path) == before  # nothing was decoded


def test_a_png_pattern_replaces_its_pictures_together(tmp_path, capsys, stream):
    (tmp_path / "r_0002.png").write_bytes(b"old")
    code, _, _ = run_main(capsys, "decode", str(stream), "-o", str(tmp_path / "r_%04d.png"), "-y")
    pictures = sorted(p.name for p in tmp_path.glob("r_*.png"))
    assert code == 0 and pictures == [f"r_{n:04d}.png" for n in range(1, 5)]
    assert (tmp_path / "r_0002.png").read_bytes() != b"old"
    assert not list(tmp_path.glob(".*"))  # no temporary file is left


# ----------------------------------------------------------------------------- all or nothing


class FullDisk:
    """A file on a disk that has no room left: every write fails with ENOSPC."""

    def __init__(self, file) -> None:
        self.file = file

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        self.file.close()


def fill_disk_under(monkeypatch, name: str) -> None:
    """Writes to the output named ``name`` fail as on a full disk; the others succeed."""
    write = AtomicOutput.write

    def write_or_fail(self, data: bytes) -> int:
        if self.target.name == name and not isinstance(self.file, FullDisk):
            self.file = FullDisk(self.file)
        return write(self, data)

    monkeypatch.setattr(AtomicOutput, "write", write_or_fail)


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_output_takes_the_others_with_it(
    tmp_path,
    capsys,
    fake_engine,  # noqa: F811
    clip,  # noqa: F811
    monkeypatch,
    existing,
):
    """The disk full under the CSV: neither the bitstream nor the reconstruction is left, and
    with -y the files they were to replace are as they were."""
    if existing:
        for name in ("ok.cvc", "rec.y4m", "x.csv"):
            (tmp_path / name).write_bytes(f"the user's {name}".encode())
    before = snapshot(tmp_path)
    fill_disk_under(monkeypatch, "x.csv")
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "ok.cvc"),
        "--recon", str(tmp_path / "rec.y4m"), "--csv", str(tmp_path / "x.csv"), "-q", "-y",
    )  # fmt: skip
    assert_refused(code, err, 1, f"{tmp_path / 'x.csv'}: write failed: No space left on device")
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob(".*"))


def test_a_failed_rename_puts_back_what_was_replaced(tmp_path, monkeypatch):
    """The last step, the renames: when one fails, the files already renamed are taken back
    and the files they replaced come back."""
    first, second = tmp_path / "a.cvc", tmp_path / "b.csv"
    first.write_bytes(b"old a")
    before = snapshot(tmp_path)
    replace = os.replace

    def replace_or_fail(source, target):
        if Path(target) == second:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_or_fail)
    with pytest.raises(Exception, match="b.csv: cannot write: Input/output error"):
        with OutputGroup():
            for path in (first, second):
                with AtomicOutput(path, overwrite=True) as out:
                    out.write(b"new")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cvc"]


def test_outputs_appear_only_when_the_group_ends(tmp_path):
    with OutputGroup():
        with AtomicOutput(tmp_path / "a.cvc", overwrite=False) as out:
            out.write(b"a")
        assert not (tmp_path / "a.cvc").exists()
    assert (tmp_path / "a.cvc").read_bytes() == b"a"


# ----------------------------------------------------------------------------- standard streams


def run_without(descriptors: tuple[int, ...], *args: str, cwd: Path) -> tuple[int, str, bytes]:
    """The command line (stand-in engine) started with ``descriptors`` closed, as ``<&-``,
    ``>&-`` and ``2>&-`` start it."""

    def close() -> None:
        for descriptor in descriptors:
            os.close(descriptor)

    result = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, *args],
        stdout=None if 1 in descriptors else subprocess.PIPE,
        stderr=None if 2 in descriptors else subprocess.PIPE,
        stdin=None if 0 in descriptors else subprocess.DEVNULL,
        preexec_fn=close,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"},
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    err = (result.stderr or b"").decode()
    return result.returncode, err, result.stdout or b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("decode", "-", "-o", "o.yuv"), "stdin is closed: pipe a stream in or name an input file"),
        (("info", "-"), "stdin is closed: pipe a stream in or name an input file"),
        (("encode", "-", "-o", "o.cvc"), "stdin is closed: pipe a video in or name an input file"),
    ],
)
def test_closed_stdin(tmp_path, args, message):
    code, err, _ = run_without((0,), *args, cwd=tmp_path)
    assert code == 1 and err == f"canfvc: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_closed_stdout(tmp_path, clip):  # noqa: F811
    before = snapshot(tmp_path)
    code, err, _ = run_without((1,), "info", str(clip), cwd=tmp_path)
    assert code == 1 and err == "canfvc: stdout is closed: nowhere to print the report\n"
    code, err, _ = run_without((1,), "encode", str(clip), "-o", "-", cwd=tmp_path)
    assert code == 1 and err == "canfvc: stdout is closed: name an output file instead of -\n"
    assert snapshot(tmp_path) == before


def test_closed_stderr(tmp_path, clip):  # noqa: F811
    """Without stderr the run goes on (its messages have nowhere to go) and nothing it would
    have said lands in its output."""
    code, _, out = run_without((2,), "encode", str(clip), "-o", "s.cvc", cwd=tmp_path)
    assert code == 0 and out == b"" and (tmp_path / "s.cvc").exists()
    before = snapshot(tmp_path)
    code, _, out = run_without((2,), "encode", str(clip), "-o", "s.cvc", cwd=tmp_path)
    assert code == 1 and out == b""  # exists, without -y: the status says so
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_lambda_must_be_finite(tmp_path, capsys, clip, value):  # noqa: F811
    code, _, err = run_main(
        capsys, "encode", str(clip), "-o", str(tmp_path / "o.cvc"), "--lambda", value
    )
    assert_refused(
        code, err, 2, f"Invalid value for '--lambda': must be a finite number, not {value}"
    )


def test_an_empty_stream_on_stdin_says_so(tmp_path):
    result = canfvc("decode", "-", "-o", str(tmp_path / "o.y4m"), stdin=b"")
    assert result.returncode == 1
    assert result.stderr == b"canfvc: stdin: empty input (no .cvc stream)\n"
    assert list(tmp_path.iterdir()) == []


def test_interrupted_says_so(tmp_path, clip):  # noqa: F811
    before = snapshot(tmp_path)
    result = canfvc(
        "encode", str(clip), "-o", str(tmp_path / "o.cvc"), "-q",
        env={"FAKE_FAIL_AFTER": "1", "FAKE_INTERRUPT": "1"},
    )  # fmt: skip
    assert result.returncode == 130 and result.stderr == b"canfvc: interrupted\n"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("mode", ["t", "b", "m"])
def test_interlaced_y4m_is_warned(tmp_path, capsys, fake_engine, mode):  # noqa: F811
    source = tmp_path / "i.y4m"
    write_all(source, random_frames(2), info_for())
    data = source.read_bytes()
    header_end = data.index(b"\n")
    source.write_bytes(
        data[:header_end].replace(b" Ip", b"") + f" I{mode}".encode() + data[header_end:]
    )
    code, _, err = run_main(capsys, "encode", str(source), "-o", str(tmp_path / "o.cvc"), "-q")
    assert code == 0
    assert err == (
        f"canfvc: warning: {source}: interlaced video (I{mode}) is coded as progressive frames, "
        "both fields together (deinterlace it first, e.g. ffmpeg -vf bwdif)\n"
    )


# ----------------------------------------------------------------------------- mp4 and mkv


def h264_profile(path: Path) -> str:
    """The H.264 profile ffmpeg reports for the file's video stream."""
    log = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, check=False
    ).stderr.decode()
    match = re.search(r"Video: h264 \(([^)]*)\)", log)
    assert match is not None, log
    return match.group(1)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_lossless_h264_is_what_the_readme_says_and_playable_is_high_profile(
    tmp_path,
    capsys,
    stream,
    suffix,
):
    lossless, playable = tmp_path / f"rec{suffix}", tmp_path / f"watch{suffix}"
    assert run_main(capsys, "decode", str(stream), "-o", str(lossless), "-q")[0] == 0
    assert run_main(capsys, "decode", str(stream), "-o", str(playable), "--playable", "-q")[0] == 0
    assert h264_profile(lossless) == "High 4:4:4 Predictive"
    assert h264_profile(playable) == "High"


def test_playable_is_for_h264_outputs_only(tmp_path, capsys, stream):
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "decode", str(stream), "-o", str(tmp_path / "r.y4m"), "--playable"
    )
    assert_refused(
        code, err, 2, f"--playable is for .mp4 and .mkv output, not {tmp_path / 'r.y4m'}"
    )
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- eval


@pytest.mark.parametrize("where", ["results.json", "csv/config.json"])
def test_eval_refuses_a_config_that_its_report_would_write_over(tmp_path, capsys, clip, where):  # noqa: F811
    config = tmp_path / "out" / where
    config.parent.mkdir(parents=True)
    config.write_text(
        json.dumps({"name": "t", "sequences": [{"name": "c", "path": str(clip), "frames": 2}]})
    )
    before = snapshot(tmp_path)
    code, _, err = run_main(
        capsys, "eval", "--config", str(config), "--out", str(tmp_path / "out"),
        "--skip-canfvc", "--anchors", "none",
    )  # fmt: skip
    expected = "would write over --config" if where == "results.json" else "which the report writes"
    assert_refused(code, err, 2, expected)
    assert snapshot(tmp_path) == before
