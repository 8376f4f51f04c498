"""canfvc_codec.lab.bd_between: BD-rate of one model against another, from eval or estimate
records."""

from __future__ import annotations

import json
from pathlib import Path

from canfvc_codec.lab import bd_between

LABEL = "canfvc-estimate"


def _record(path: Path, bits_scale: float) -> Path:
    """An estimate-shaped record of one sequence: frames with bpp and types, no bytes."""
    points = []
    for k, lmbda in enumerate((256.0, 512.0, 1024.0, 2048.0)):
        quality = 30.0 + k
        i_bpp, p_bpp = 0.2 * bits_scale * 1.5**k, 0.05 * bits_scale * 1.5**k
        frames = [{"type": "I", "bpp": i_bpp, "psnr-rgb": quality}]
        frames += [{"type": "P", "bpp": p_bpp, "psnr-rgb": quality}] * 3
        points.append(
            {
                "value": lmbda,
                "bpp": (i_bpp + 3 * p_bpp) / 4,
                "psnr-rgb": quality,
                "psnr-yuv": quality + 4,
                "ms-ssim-rgb": 0.95 + 0.005 * k,
                "frames": frames,
            }
        )
    path.write_text(json.dumps({"sequences": {"clip": {"codecs": {LABEL: points}}}}))
    return path


def test_a_model_with_half_the_bits_is_fifty_percent_cheaper(tmp_path: Path) -> None:
    reference, test = _record(tmp_path / "a.json", 1.0), _record(tmp_path / "b.json", 0.5)
    out = tmp_path / "b_vs_a.json"
    bd_between.main(
        ["--reference", str(reference), "--test", str(test), "--label", LABEL, "--out", str(out)]
    )
    result = json.loads(out.read_text())
    for metric in ("psnr-rgb", "psnr-yuv", "ms-ssim-rgb"):
        assert abs(result["bd_rate_test_vs_reference"][metric]["average"] + 50.0) < 0.5
    use = result["intra_use"]["clip"]["test"]["256"]
    assert (use["i_frames"], use["frames"]) == (1, 4)
    assert abs(use["i_bits_share"] - 0.2 / 0.35) < 1e-3
    assert result["p_over_i"]["clip"]["test"] == 0.25
