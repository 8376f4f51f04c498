"""The limit on CPU threads that every command's ``--threads`` shares (torch-free, for the CLI).

Threads past the cores only slow the networks down, and past some tens of thousands the thread
libraries cannot start them: asked for 100,000 threads, OpenMP exhausted the process limit and
OpenBLAS then crashed the process. The limit is above the thread count of any CPU this runs on.
"""

from __future__ import annotations

import argparse

from canfvc_codec.errors import UsageError

MAX_CPU_THREADS = 1024


def check_threads(threads: int) -> int:
    """``threads`` if it is a thread count a command may ask for (0: the library's default)."""
    if not 0 <= threads <= MAX_CPU_THREADS:
        raise UsageError(f"--threads must be 0 to {MAX_CPU_THREADS}, not {threads}")
    return threads


def thread_count(text: str) -> int:
    """An ``argparse`` type for the development tools' ``--threads``."""
    try:
        return check_threads(int(text))
    except (ValueError, UsageError) as err:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_CPU_THREADS}, not {text!r}") from err
