"""Safe output files: written beside the target under a temporary name and renamed when complete.

A failed or interrupted run therefore never leaves a half-written file under the name the user
asked for, and an existing file is only replaced when the user said so (``-y``/``--overwrite``).
The outputs of one run (a bitstream, its reconstruction, a CSV) are an :class:`OutputGroup`:
they are renamed together at the end of the run, or not at all.
A character device (``/dev/null``) or a named pipe is a stream, not a file: it is written in
place, without ``-y``, and never replaced by a rename (which would put a regular file where the
device or pipe was).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from canfvc_codec.errors import OutputError

STDIO_NAME = "-"
# Mode of new files; the process umask still applies, as for any file the user creates.
NEW_FILE_MODE = 0o666
TEMP_SUFFIX = ".part"
# A file that a group's commit replaces waits under this suffix until every output is in place.
REPLACED_SUFFIX = ".old"


def is_stream_target(target: Path) -> bool:
    """Whether ``target`` is a character device or a named pipe, written in place."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_output_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Fail early, before any work, when ``path`` cannot be written as asked."""
    target = Path(path)
    if is_stream_target(target):
        return target
    if target.is_dir():
        raise OutputError(f"{target}: is a directory")
    if target.exists() and not target.is_file():
        raise OutputError(f"{target}: not a regular file, a character device or a named pipe")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists (use -y/--overwrite to replace it)")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: folder {parent} does not exist")
    return target


def temp_path_for(target: Path, suffix: str = TEMP_SUFFIX) -> Path:
    """A fresh hidden name in the target's folder, so that the final rename stays on one disk."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{suffix}")


def _already_exists(target: Path) -> OutputError:
    return OutputError(f"{target}: already exists (use -y/--overwrite to replace it)")


class OutputGroup:
    """The outputs of one run, moved into place together when the run ends, or not at all.

    Every :class:`AtomicOutput` created while a group is open (``with OutputGroup():``) joins it:
    its own commit only closes the finished temporary file. The group's :meth:`commit` then
    checks every target, moves each file it replaces aside, renames every output into place and
    only then deletes what it replaced; a failure at any step puts back every file that was
    there and leaves none of the new ones. A group made while another is open hands its outputs
    to that one when it commits (a PNG sequence inside a run).
    """

    def __init__(self) -> None:
        self._parent = _OPEN_GROUPS[-1] if _OPEN_GROUPS else None
        self._members: list[AtomicOutput] = []

    def add(self, output: AtomicOutput) -> None:
        self._members.append(output)

    def commit(self) -> None:
        """Move every finished output to its name; on any failure, leave everything as it was."""
        finished = [out for out in self._members if out.waiting]
        self._members = []
        if self._parent is not None:
            self._parent._members.extend(finished)
            return
        try:
            for out in finished:
                if not out.overwrite and out.target.exists():
                    raise _already_exists(out.target)
            _place_all(finished)
        except BaseException:
            for out in finished:
                out.discard()
            raise

    def discard(self) -> None:
        """Remove every output under way; safe to call more than once."""
        members, self._members = self._members, []
        for out in members:
            out.discard()

    def __enter__(self) -> OutputGroup:
        _OPEN_GROUPS.append(self)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        _OPEN_GROUPS.remove(self)
        if exc_type is None:
            self.commit()
        else:
            self.discard()


# The groups open in this process, innermost last: one run of a command at a time.
_OPEN_GROUPS: list[OutputGroup] = []


def _place_all(outputs: list[AtomicOutput]) -> None:
    """Rename each output's temporary file to its target, all or none (see OutputGroup)."""
    replaced: list[tuple[Path, Path]] = []  # (where the old file waits, its name)
    placed: list[Path] = []
    try:
        for out in outputs:
            if out.target.exists() or out.target.is_symlink():
                aside = temp_path_for(out.target, REPLACED_SUFFIX)
                os.replace(out.target, aside)
                replaced.append((aside, out.target))
            os.replace(out.temp_path, out.target)
            placed.append(out.target)
            out.done = True
    except BaseException as err:
        for target in placed:
            target.unlink(missing_ok=True)
        for aside, target in reversed(replaced):
            os.replace(aside, target)
        if isinstance(err, OSError):
            name = out.target  # the output whose rename failed
            raise OutputError(f"{name}: cannot write: {err.strerror}") from None
        raise
    for aside, _ in replaced:
        aside.unlink(missing_ok=True)


class AtomicOutput:
    """A binary file that appears under its real name only when :meth:`commit` is called.

    Use as a context manager: leaving the block normally commits, an exception discards.
    It can be handed to code expecting a writable binary file (``write``, ``flush``, ``tell``);
    write failures become :class:`OutputError`.
    ``file`` is the open temporary file; ``temp_path`` its name, for tools (ffmpeg) that
    write the file themselves (open with ``open_file=False`` then). For a device or a named pipe
    (``in_place``) both are the target itself, and there is nothing to rename or remove.
    Inside an :class:`OutputGroup` (``group``, else the innermost open one) commit only finishes
    the file (``waiting``); the group renames it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        overwrite: bool,
        open_file: bool = True,
        group: OutputGroup | None = None,
    ) -> None:
        self.target = check_output_path(path, overwrite)
        self.overwrite = overwrite
        self.in_place = is_stream_target(self.target)
        self.temp_path = self.target if self.in_place else temp_path_for(self.target)
        self.done = False
        self.waiting = False  # finished, to be renamed by its group
        self.file: BinaryIO | None = None
        self.group = group if group is not None else (_OPEN_GROUPS[-1] if _OPEN_GROUPS else None)
        if self.in_place and not open_file:
            # The tool opens the device or pipe itself: opening and closing it here would end a
            # pipe's stream before the tool wrote anything.
            return
        flags = os.O_WRONLY if self.in_place else os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            # A named pipe's open waits for its reader, as any writer's does.
            fd = os.open(self.temp_path, flags, NEW_FILE_MODE)
        except OSError as err:
            raise OutputError(f"{self.target}: cannot create: {err.strerror}") from None
        if open_file:
            self.file = os.fdopen(fd, "wb")
        else:
            os.close(fd)
        if self.group is not None and not self.in_place:
            self.group.add(self)

    def write(self, data: bytes) -> int:
        assert self.file is not None, "AtomicOutput opened without a file"
        try:
            return self.file.write(data)
        except OSError as err:
            raise OutputError(f"{self.target}: write failed: {err.strerror}") from None

    def flush(self) -> None:
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as err:  # a full disk shows here as often as in write
                raise OutputError(f"{self.target}: write failed: {err.strerror}") from None

    def tell(self) -> int:
        assert self.file is not None, "AtomicOutput opened without a file"
        return self.file.tell()

    def writable(self) -> bool:
        return True

    def commit(self) -> None:
        """Close and move the finished file to its real name (its group's commit does that)."""
        if self.done or self.waiting:
            return
        grouped = self.group is not None and not self.in_place
        self.done = not grouped
        try:
            if self.file is not None:
                self.file.close()
            if self.in_place:
                return
            if grouped:
                self.waiting = True
                return
            if self.target.exists() and not self.overwrite:
                raise _already_exists(self.target)
            os.replace(self.temp_path, self.target)
        except OSError as err:
            self._remove_temp()
            raise OutputError(f"{self.target}: cannot write: {err.strerror}") from None
        except OutputError:
            self._remove_temp()
            raise

    def discard(self) -> None:
        """Remove the partial (or finished, not yet renamed) output; safe to call more than once."""
        if self.done:
            return
        self.done = True
        self.waiting = False
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass  # the partial file is being thrown away; a failed flush changes nothing
        self._remove_temp()

    def _remove_temp(self) -> None:
        if self.in_place:
            return
        try:
            self.temp_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def is_broken_pipe(err: BaseException) -> bool:
    return isinstance(err, BrokenPipeError) or (
        isinstance(err, OSError) and err.errno in (errno.EPIPE, errno.EINVAL)
    )


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away.

    Python flushes stdout at exit; with the reader gone that flush fails again and prints a
    second error. Replacing the descriptor keeps the exit quiet and the status ours.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout already closed or replaced (tests): nothing left to flush


def broken_pipe_error() -> OutputError:
    silence_stdout()
    return OutputError("output pipe closed before the video was complete (broken pipe)")


class StdoutSink:
    """stdout as a binary sink: nothing to rename, and a closed pipe becomes a clear error.

    Like :class:`AtomicOutput` it can be handed to code that expects a writable binary file.
    """

    def __init__(self) -> None:
        self.file = sys.stdout.buffer
        self._position = 0

    def write(self, data: bytes) -> int:
        try:
            written = self.file.write(data)
        except OSError as err:
            if is_broken_pipe(err):
                raise broken_pipe_error() from None
            raise OutputError(f"stdout: write failed: {err.strerror}") from None
        self._position += len(data)
        return written

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as err:
            if is_broken_pipe(err):
                raise broken_pipe_error() from None
            raise OutputError(f"stdout: write failed: {err.strerror}") from None

    def tell(self) -> int:
        """Bytes written so far (a pipe cannot seek, but callers may count)."""
        return self._position

    def writable(self) -> bool:
        return True

    def commit(self) -> None:
        self.flush()

    def discard(self) -> None:
        try:
            self.file.flush()
        except OSError:
            silence_stdout()

    def __enter__(self) -> StdoutSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def open_sink(path: str, overwrite: bool) -> AtomicOutput | StdoutSink:
    """A binary output: stdout for ``-``, otherwise a file renamed into place when complete."""
    return StdoutSink() if path == STDIO_NAME else AtomicOutput(path, overwrite)
