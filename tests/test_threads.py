"""The shared limit on --threads: refused beyond it before any thread starts."""

from __future__ import annotations

import argparse

import pytest

from canfvc_codec.device import set_cpu_threads
from canfvc_codec.errors import UsageError
from canfvc_codec.threads import MAX_CPU_THREADS, check_threads, thread_count


def test_check_threads_accepts_the_range_and_refuses_the_rest():
    assert check_threads(0) == 0 and check_threads(MAX_CPU_THREADS) == MAX_CPU_THREADS
    for threads in (-1, MAX_CPU_THREADS + 1, 100_000):
        with pytest.raises(UsageError, match=f"--threads must be 0 to {MAX_CPU_THREADS}"):
            check_threads(threads)


def test_set_cpu_threads_refuses_before_starting_threads():
    with pytest.raises(UsageError):
        set_cpu_threads(100_000)


def test_thread_count_is_an_argparse_type():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=thread_count)
    assert parser.parse_args(["--threads", "3"]).threads == 3
    for text in ("100000", "-2", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--threads", text])
