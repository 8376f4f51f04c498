"""CPU threads: the limit every command's ``--threads`` shares, and defaults that hold up when
the machine is shared (torch-free, for the CLI).

Threads past the cores only slow the networks down, and past some tens of thousands the thread
libraries cannot start them: asked for 100,000 threads, OpenMP exhausted the process limit and
OpenBLAS then crashed the process. The limit is above the thread count of any CPU this runs on.

On a machine that other work keeps busy, one thread per core is the worst default: each of
torch's OpenMP threads waits at every barrier for the slowest, which another process has
descheduled, and by default OpenMP's idle threads spin for their next task, taking cores from
that other work. With two cores busy with training, decoding four 176x144 frames took 36.5 s at
one thread per core and 3.1 s on one thread. So the default counts only the cores that are free
(those this process may run on, less the load average), and OpenMP waits passively.
"""

from __future__ import annotations

import argparse
import os

from canfvc_codec.errors import UsageError, warn

MAX_CPU_THREADS = 1024
# Set before torch starts its thread pool (the OpenMP runtime reads it once, when loaded), unless
# the user chose a policy: idle threads sleep instead of spinning on cores other work needs.
OMP_WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def prepare_process() -> None:
    """Thread settings that must be in place before torch is imported: call at the start."""
    name, value = OMP_WAIT_POLICY
    os.environ.setdefault(name, value)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset and containers set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """The usable cores less those other processes keep busy (the one-minute load average,
    rounded), at least one."""
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this system
        busy = 0
    return max(1, usable_cores() - busy)


def cpu_threads(threads: int) -> int:
    """The threads to run on: ``threads``, or for 0 (the default) one per free core."""
    return threads or free_cores()


def check_thread_request(threads: int) -> None:
    """Warn when ``--threads`` asks for more threads than there are cores to run them."""
    cores = usable_cores()
    if threads > cores:
        warn(
            f"--threads {threads} is more than the {cores} cores this process may use: the "
            "threads past them only wait, and slow the others down"
        )


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
