"""Child-process measurement: exit status, output, and a peak RSS that is the child's own."""

from __future__ import annotations

import sys

import torch  # noqa: F401  (a large parent, as in a real evaluation)

from canfvc_codec.eval.process import run_measured

ALLOCATE_MIB = 200


def test_small_child_is_not_charged_with_the_parent():
    stats = run_measured([sys.executable, "-I", "-S", "-c", "print('hi')"])
    assert stats.ok and stats.stdout.strip() == b"hi"
    assert stats.peak_rss_mib < 100  # this process, with torch loaded, is far larger


def test_large_child_peak_and_failure():
    code = f"b = bytearray({ALLOCATE_MIB} * 2**20); b[::4096] = b'x' * len(b[::4096])"
    stats = run_measured([sys.executable, "-I", "-S", "-c", code])
    assert stats.ok and ALLOCATE_MIB <= stats.peak_rss_mib < 2 * ALLOCATE_MIB
    failed = run_measured([sys.executable, "-c", "import sys; sys.exit('broken input')"])
    assert failed.returncode == 1 and failed.error_line() == "broken input"
    missing = run_measured(["/nonexistent/tool"])
    assert missing.returncode == 127 and "tool" in missing.error_line()


def test_timeout_kills_the_command():
    # A command that, left to run, prints a line after its sleep: killed, it never does.
    code = "import time; time.sleep(30); print('finished')"
    stats = run_measured([sys.executable, "-c", code], timeout_s=1)
    assert not stats.ok and "timed out" in stats.error_line()
    assert b"finished" not in stats.stdout
