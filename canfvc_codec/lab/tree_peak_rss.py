"""Run a command and report its wall time and the peak of the memory its whole process tree
holds at once (the sum of every descendant's resident set), which ``/usr/bin/time`` cannot give:
its maximum resident set is that of the largest single process.

    python -m canfvc_codec.lab.tree_peak_rss -- canfvc encode clip.mp4 -o out.cvc --jobs 2

Prints one JSON object: command, exit status, wall seconds, peak summed RSS in MiB and the most
processes seen at once. Linux only (it reads /proc), sampling every ``--interval`` seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")
KIB_PER_MIB = 1024
DEFAULT_INTERVAL_S = 0.1


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread or process ended while being read
    return children


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> tuple[int, int]:
    """(summed resident set in KiB, number of processes) of ``root`` and its descendants."""
    pending, total, count = [root], 0, 0
    while pending:
        pid = pending.pop()
        total += _rss_kib(pid)
        count += 1
        pending += _children(pid)
    return total, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    started = time.perf_counter()
    process = subprocess.Popen(command)
    peak, most = 0, 0
    while process.poll() is None:
        rss, count = tree_rss_kib(process.pid)
        peak, most = max(peak, rss), max(most, count)
        time.sleep(args.interval)
    report = {
        "command": " ".join(command),
        "returncode": process.returncode,
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_tree_rss_mib": round(peak / KIB_PER_MIB, 1),
        "max_processes": most,
    }
    print(json.dumps(report), file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
