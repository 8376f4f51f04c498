"""The shared limit on --threads, refused beyond it before any thread starts; the defaults that
hold up on a shared machine."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from canfvc_codec import threads as cpu
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


# ----------------------------------------------------------------------------- a shared machine


@pytest.mark.parametrize(
    ("cores", "load", "free"),
    [(2, 0.1, 2), (2, 1.2, 1), (2, 3.9, 1), (16, 4.4, 12), (1, 0.0, 1)],
)
def test_the_default_is_one_thread_per_free_core(monkeypatch, cores, load, free):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert cpu.free_cores() == free
    assert cpu.cpu_threads(0) == free and cpu.cpu_threads(7) == 7


def test_more_threads_than_cores_is_warned(monkeypatch, capsys):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    cpu.check_thread_request(2)
    assert capsys.readouterr().err == ""
    cpu.check_thread_request(1024)
    assert capsys.readouterr().err == (
        "canfvc: warning: --threads 1024 is more than the 2 cores this process may use: the "
        "threads past them only wait, and slow the others down\n"
    )


def test_openmp_waits_passively_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cpu.prepare_process()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpu.prepare_process()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_command_line_starts_without_torch_so_the_policy_takes_effect():
    """The policy is read once, when torch loads the OpenMP runtime: importing the command line
    must not load torch before main() sets it."""
    code = "import sys, canfvc_codec.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.strip() == b"False"
