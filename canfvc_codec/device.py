"""Where the networks run: the device a command's ``--device`` names, and the CPU threads."""

from __future__ import annotations

import torch

from canfvc_codec.defaults import DEVICES
from canfvc_codec.errors import UsageError
from canfvc_codec.threads import check_threads

AUTO = "auto"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cpu``, ``cuda`` or ``cuda:N`` otherwise. Asking for
    CUDA without one is a usage error."""
    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or kind == AUTO:
        raise UsageError(f"unknown device {name!r} ({', '.join(DEVICES)})")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available")
    return torch.device(name)


def set_cpu_threads(threads: int) -> None:
    """Run the networks (and the DIS motion search) on ``threads`` CPU threads; 0 keeps torch's
    default of one per core. What a stream decodes to does not depend on it
    (docs/determinism.md)."""
    check_threads(threads)
    if threads:
        torch.set_num_threads(threads)
