"""P-frames priced against the intra coder on the same pictures at the same quality."""

from __future__ import annotations

import json
import math

import pytest

from canfvc_codec.errors import InputError
from canfvc_codec.lab import intra_share
from canfvc_codec.lab.estimate import ESTIMATE


def _record(frames_per_point: list[list[dict]], lambdas: list[float]) -> dict:
    points = []
    for value, frames in zip(lambdas, frames_per_point, strict=True):
        point = {"value": value, "frames": frames}
        for kind in ("I", "P"):  # as estimate_sequence writes them
            rates = [f["bpp"] for f in frames if f["type"] == kind]
            point[f"bpp-{kind}"] = sum(rates) / len(rates) if rates else None
        points.append(point)
    return {"sequences": {"clip": {"codecs": {ESTIMATE: points}}}}


def _frame(k: int, kind: str, bpp: float, psnr: float) -> dict:
    return {"frame": k, "type": kind, "bpp": bpp, "psnr-rgb": psnr}


def test_intra_curve_is_log_linear_and_extends_from_its_ends() -> None:
    curve = [(34.0, 0.4), (30.0, 0.1), (32.0, 0.2)]
    assert intra_share.intra_bpp(curve, 31.0) == pytest.approx(math.sqrt(0.1 * 0.2))
    assert intra_share.intra_bpp(curve, 32.0) == pytest.approx(0.2)
    assert intra_share.intra_bpp(curve, 36.0) == pytest.approx(0.8)  # past the last point
    assert intra_share.intra_bpp(curve, 28.0) == pytest.approx(0.05)  # before the first


@pytest.mark.parametrize("curve", [[(30.0, 0.1), (30.0, 0.2)], [(30.0, 0.0), (32.0, 0.2)]])
def test_a_degenerate_intra_curve_is_refused(curve) -> None:
    with pytest.raises(InputError, match="rising PSNR and positive rates"):
        intra_share.intra_bpp(curve, 31.0)


def test_p_frames_are_priced_at_their_own_quality(tmp_path, capsys) -> None:
    # Every picture costs 0.1 bpp at 30 dB and 0.2 bpp at 32 dB as an I-frame.
    intra = _record(
        [
            [_frame(k, "I", 0.1, 30.0) for k in range(3)],
            [_frame(k, "I", 0.2, 32.0) for k in range(3)],
        ],
        [256.0, 1024.0],
    )
    # P-frames at 31 dB for 0.05 bpp: a quarter below the I-frame of the stream (0.2 at 32 dB),
    # but the intra coder would need sqrt(0.02) bpp for the same pictures at 31 dB.
    coded = _record(
        [[_frame(0, "I", 0.2, 32.0), _frame(1, "P", 0.05, 31.0), _frame(2, "P", 0.05, 31.0)]],
        [1024.0],
    )
    (row,) = intra_share.intra_share(intra, coded, "clip")
    assert row["p_frames"] == 2 and row["p_over_i"] == pytest.approx(0.25)
    assert row["p_over_same_intra"] == pytest.approx(0.05 / math.sqrt(0.02))
    paths = []
    for name, record in (("intra.json", intra), ("coded.json", coded)):
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_text(json.dumps(record))
    intra_share.main([*paths, "--sequence", "clip"])
    assert "P against intra at the same PSNR 0.354" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        intra_share.main([*paths, "--sequence", "other"])
    assert "need estimates of other" in str(exit_info.value.code)
