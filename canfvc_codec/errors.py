"""User-facing errors and warnings. The CLI prints ``canfvc: <message>`` and exits with
``exit_code``; a warning is one ``canfvc: warning: <message>`` line on stderr and the work goes on.

Every failure a user can cause (bad input, bad file, existing output, corrupt bitstream) raises a
subclass of :class:`CanfvcError`; anything else reaching the CLI is a bug.
"""

from __future__ import annotations

import sys


class CanfvcError(Exception):
    """A failure with a clear one-line message for the user."""

    exit_code = 1


class UsageError(CanfvcError):
    """The command line asks for something impossible (unknown size, bad option value)."""

    exit_code = 2


class InputError(CanfvcError):
    """The input video cannot be read as asked (missing file, bad header, wrong size)."""


class OutputError(CanfvcError):
    """The output cannot be written (exists without --overwrite, broken pipe, bad extension)."""


class BitstreamError(CanfvcError):
    """A .cvc file is damaged or not a .cvc file; names the frame where it is known."""

    def __init__(self, message: str, frame: int | None = None) -> None:
        self.frame = frame
        super().__init__(f"frame {frame}: {message}" if frame is not None else message)


class ModelError(CanfvcError):
    """A model cannot be found or loaded, or does not match the bitstream."""


def warn(message: str) -> None:
    """Tell the user, on one stderr line, about something that works but not as they may expect.

    Nothing when the process has no stderr (``2>&-``): print would write to stdout instead."""
    if sys.stderr is not None:
        print(f"canfvc: warning: {message}", file=sys.stderr)
