"""The benchmark driver: speed rows through a stand-in CLI, and the README it writes."""

from __future__ import annotations

import sys

from canfvc_codec.lab import bench
from tests.test_eval_runner import BROKEN_CLI, FAKE_CLI, _script

SIZE = (64, 48)
FRAMES = 3


def test_speed_rows_and_readme(tmp_path):
    fake = _script(tmp_path / "fake_python", FAKE_CLI.format(python=sys.executable))
    speed = bench.speed_benchmark(FRAMES, "some-model", (SIZE,), steady=True, python=fake)
    assert speed["status"] == "ok" and speed["model"] == "some-model"
    (row,) = speed["rows"]
    assert row["size"] == "64x48" and row["frames"] == FRAMES and "error" not in row
    assert row["encode_fps"] > 0 and row["decode_peak_rss_mib"] > 0

    record = {
        "date": "2026-01-01T00:00:00+00:00",
        "command": "python -m canfvc_codec.lab.bench --skip-rd",
        "machine": {"processor": "cpu", "platform": "linux", "torch": "x", "cuda": None},
        "entropy": {"status": "skipped", "reason": "no entropy bench"},
        "speed": speed,
        "rd": None,
    }
    text = bench.write_readme(tmp_path, record).read_text()
    assert "| 64x48 | cpu | 3 |" in text and "Skipped (--skip-rd)" in text
    assert "no entropy bench" in text and "model id: n/a" in text


def test_missing_cli_skips_speed(tmp_path):
    broken = _script(tmp_path / "broken", BROKEN_CLI)
    speed = bench.speed_benchmark(FRAMES, None, (SIZE,), steady=False, python=broken)
    assert speed["status"] == "skipped" and "No module named" in speed["reason"]
