"""Run one child process and measure what it cost: wall time and its own peak memory.

``os.wait4`` returns the resource usage of exactly that child, so the peak RSS of an encoder is not
mixed up with earlier children (``RUSAGE_CHILDREN`` only keeps the maximum over all of them).
"""

from __future__ import annotations

import os
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
    cwd: Path | None = None,
    env: dict | None = None,
    timeout_s: float | None = None,
) -> RunStats:
    """Run ``cmd`` to completion; stdout/stderr go through temporary files (no pipe deadlock)."""
    args = [os.fspath(c) for c in cmd]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env
        )
        deadline = None if timeout_s is None else start + timeout_s
        status, usage = _wait(proc, deadline)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        stderr = err.read().decode("utf-8", "replace")
    returncode = os.waitstatus_to_exitcode(status)
    proc.returncode = returncode  # reaped by wait4: keep Popen from waiting again
    peak = usage.ru_maxrss * _MAXRSS_BYTES_PER_UNIT / BYTES_PER_MIB
    return RunStats(returncode, wall, peak, stdout, stderr)


def _wait(proc: subprocess.Popen, deadline: float | None) -> tuple[int, os.struct_rusage]:
    """wait4 the child, killing it once the deadline passes."""
    poll_s = 0.05
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid == proc.pid:
            return status, usage
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return status, usage
        time.sleep(poll_s)
