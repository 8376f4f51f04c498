"""Coding at a target rate (canfvc_codec.ratecontrol): the λ search on rate curves of known
shape, and ``canfvc encode --bitrate/--bpp`` on a tiny clip: the rate met, bad targets refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canfvc_codec.bitstream import describe
from canfvc_codec.cli import main
from canfvc_codec.errors import UsageError
from canfvc_codec.io import Frame, VideoInfo, open_writer
from canfvc_codec.ratecontrol import (
    MAX_RATE_TRIALS,
    RATE_TOLERANCE,
    check_rereadable,
    parse_bitrate,
    parse_bpp,
    rate_target,
    search_lambda,
)
from tests.conftest import real_yuv_frames

LOWEST, HIGHEST = 256.0, 2048.0


def power_curve(rate_at_lowest: float, slope: float):
    """A rate that rises as λ to the power ``slope``, and the λs measured on it."""
    tried: list[float] = []

    def measure(lmbda: float) -> tuple[float, float]:
        tried.append(lmbda)
        return rate_at_lowest * (lmbda / LOWEST) ** slope, lmbda

    return measure, tried


@pytest.mark.parametrize("slope", [0.2, 0.35, 0.6])
@pytest.mark.parametrize("target", [101.0, 150.0, 240.0])
def test_the_search_meets_a_reachable_target_in_few_trials(slope, target):
    measure, tried = power_curve(100.0, slope)
    if target > 100.0 * (HIGHEST / LOWEST) ** slope:
        target = 100.0 * 1.2
    kept, coded, trials = search_lambda(measure, parse_bpp(target), LOWEST, HIGHEST)
    assert abs(kept.rate / target - 1) <= RATE_TOLERANCE
    assert coded == kept.lmbda and [t.lmbda for t in trials] == tried
    assert len(trials) <= 4 and all(LOWEST <= lmbda <= HIGHEST for lmbda in tried)


def test_a_rate_that_jumps_past_the_target_keeps_the_nearest_with_a_warning(capsys):
    def measure(lmbda: float) -> tuple[float, None]:  # an I-frame more above λ 700
        return (100.0 if lmbda < 700 else 200.0), None

    kept, _, trials = search_lambda(measure, parse_bpp(160.0), LOWEST, HIGHEST)
    assert kept.rate == 200.0 and len(trials) <= MAX_RATE_TRIALS
    assert "the nearest rate found is 200 bpp" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (50.0, "--bpp 50.0 is below what the lowest λ reaches on this clip: 100 bpp at λ 256"),
        (900.0, "--bpp 900.0 is above what the highest λ reaches on this clip: 200 bpp at λ 2048"),
    ],
)
def test_targets_out_of_reach_are_refused(target, message):
    measure, _ = power_curve(100.0, 1 / 3)  # 100 at λ 256, 200 at λ 2048
    with pytest.raises(UsageError) as err:
        search_lambda(measure, parse_bpp(target), LOWEST, HIGHEST)
    assert str(err.value) == message


def test_bitrates_read_as_ffmpeg_writes_them():
    assert parse_bitrate("500k").value == 500.0  # kbit/s, the summary's unit
    assert parse_bitrate("2M").value == parse_bitrate("2m").value == 2000.0
    assert parse_bitrate("800000").value == 800.0
    assert rate_target(None, None) is None and rate_target(None, "0.1").value == 0.1
    for text, problem in [("0", "must be more than 0"), ("-5k", "must be more than 0"),
                          ("fast", "not a bitrate"), ("5 kbit", "not a bitrate")]:  # fmt: skip
        with pytest.raises(UsageError, match=f"^--bitrate {text}: {problem}"):
            parse_bitrate(text)


# ----------------------------------------------------------------------------- the command line

# The published model: random weights code every frame in a few bytes at any λ.
MODEL = "small"
WIDTH, HEIGHT, COUNT, FPS = 64, 64, 4, 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rate") / "clip.y4m"
    info = VideoInfo(WIDTH, HEIGHT, FPS, 1, 8, "bt709", False, COUNT)
    with open_writer(str(path), info) as writer:
        for planes in real_yuv_frames("bikes.mp4", 0, COUNT, WIDTH, HEIGHT):
            writer.write(Frame(*planes))
    return path


def _encode(capsys, clip: Path, out: Path, *options: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(["encode", str(clip), "-o", str(out), "--model", MODEL, "--threads", "1",
              "--no-adaptive-intra", *options])  # fmt: skip
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("option", "target", "unit"), [("--bitrate", "27k", 27.0),
                                                         ("--bpp", "0.3", 0.3)])  # fmt: skip
def test_encode_meets_a_reachable_target(tmp_path, capsys, clip, option, target, unit):
    out = tmp_path / "out.cvc"
    code, err = _encode(capsys, clip, out, option, target)
    assert code == 0, err
    totals = describe(out.open("rb"))["totals"]
    achieved = totals["kbps"] if option == "--bitrate" else totals["bpp"]
    assert abs(achieved / unit - 1) <= RATE_TOLERANCE
    key = "target_kbps" if option == "--bitrate" else "target_bpp"
    assert f"{key}={unit:g}" in err and "rate_trials=" in err
    with pytest.raises(SystemExit):  # `canfvc info` shows the achieved rate
        main(["info", str(out), "--json"])
    assert json.loads(capsys.readouterr().out)["totals"]["kbps"] == totals["kbps"]


def test_the_reconstruction_is_the_streams(tmp_path, capsys, clip):
    out, recon = tmp_path / "out.cvc", tmp_path / "rec.yuv"
    assert _encode(capsys, clip, out, "--bitrate", "27k", "--recon", str(recon))[0] == 0
    decoded = tmp_path / "dec.yuv"
    with pytest.raises(SystemExit):
        main(["decode", str(out), "-o", str(decoded), "-q"])
    assert decoded.read_bytes() == recon.read_bytes()
    again = tmp_path / "again.cvc"
    assert _encode(capsys, clip, again, "--bitrate", "27k")[0] == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--bitrate", "0"], "--bitrate 0: must be more than 0"),
        (["--bitrate", "-500k"], "--bitrate -500k: must be more than 0"),
        (["--bpp", "0"], "--bpp 0: must be more than 0"),
        (["--bitrate", "1k"], "--bitrate 1k is below what the lowest λ reaches on this clip: "),
        (["--bitrate", "50M"], "--bitrate 50M is above what the highest λ reaches on this clip: "),
        (["--bitrate", "30k", "--lambda", "512"], "--bitrate chooses λ: give it or --lambda"),
    ],
)
def test_bad_targets_are_one_line_and_status_2(tmp_path, capsys, clip, options, message):
    out = tmp_path / "out.cvc"
    code, err = _encode(capsys, clip, out, "-q", *options)
    assert code == 2 and err.startswith(f"canfvc: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_stdin_cannot_be_coded_to_a_rate():
    with pytest.raises(UsageError, match="read the input more than once: name an input file"):
        check_rereadable("-", "-")
    check_rereadable("clip.y4m", "-")
