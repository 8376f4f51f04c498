"""Run one child process and measure what it cost: wall time and its own peak memory.

Linux charges a process that calls exec with the peak RSS of the memory image it replaces, so a
command started straight from this (torch-sized) interpreter would report at least our own peak.
Each command therefore runs under a small probe: a bare interpreter that spawns the command,
waits for it with ``wait4`` (the usage of exactly that child) and reports its peak RSS and wall time
through a file. The floor left is the probe's own few MiB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# ru_maxrss is in kibibytes on Linux and in bytes on macOS.
_MAXRSS_BYTES_PER_UNIT = 1 if sys.platform == "darwin" else 1024
BYTES_PER_MIB = 1024 * 1024
# Lines of a failed child's stderr kept for the error message.
STDERR_TAIL_LINES = 3

# argv: report_path, command...; stdin/stdout/stderr are inherited by the command.
_PROBE = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as exc:
    sys.stderr.write(f"{argv[0]}: {exc.strerror}\\n")
    sys.exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as handle:
    json.dump({"wall_s": wall, "maxrss": usage.ru_maxrss}, handle)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)  # shell style for signals
"""


@dataclass
class RunStats:
    """What one child process cost."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: bytes
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_line(self) -> str:
        """The last non-empty stderr lines, for a one-line report of a failure."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        tail = " | ".join(lines[-STDERR_TAIL_LINES:])
        return tail or f"exit status {self.returncode}"


def run_measured(
    cmd: Sequence[str | os.PathLike],
    *,
    env: dict | None = None,
    timeout_s: float | None = None,
) -> RunStats:
    """Run ``cmd`` to completion under the probe; output goes through temporary files."""
    args = [os.fspath(c) for c in cmd]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="canfvc-probe-") as tmp,
    ):
        report = Path(tmp) / "usage.json"
        probe = [sys.executable, "-I", "-S", "-c", _PROBE, str(report), *args]
        start = time.perf_counter()
        # A session of its own, so that a timeout can stop the command along with the probe.
        proc = subprocess.Popen(
            probe, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            err.write(f"\ntimed out after {timeout_s:g} s\n".encode())
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        stderr = err.read().decode("utf-8", "replace")
        try:
            usage = json.loads(report.read_text())
        except (OSError, ValueError):
            usage = {"wall_s": wall, "maxrss": 0}  # killed, or the command never started
    peak = usage["maxrss"] * _MAXRSS_BYTES_PER_UNIT / BYTES_PER_MIB
    return RunStats(returncode, usage["wall_s"], peak, stdout, stderr)
