"""Which files a run reads and writes, compared by identity before any work.

An output that is an input, or two outputs that are one file, would lose what the user had: a
source replaced by its reconstruction, a bitstream by a CSV. Names are not enough to tell: a hard
link or a symbolic link gives one file two names. So each path is compared by what it is on disk:
an existing file by its device and inode, a file still to be made by its folder's device and
inode and its name there (symbolic links resolved), a PNG pattern by every picture of it that
exists and by the names it would write.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from canfvc_codec.errors import UsageError
from canfvc_codec.io.output import STDIO_NAME, is_stream_target
from canfvc_codec.io.png import existing_pictures, is_picture_pattern, picture_name_regex

URL_MARK = "://"  # an input ffmpeg opens over the network is no file here

FileKey = tuple[int, int]  # (st_dev, st_ino)
NameKey = tuple[int, int, str]  # the folder's FileKey, and the name in it


@dataclass
class _Identity:
    """What one path (a file, or a picture pattern) is on disk."""

    role: str  # how the command line named it: "-o", "--recon", "the input"
    path: str
    files: set[FileKey] = field(default_factory=set)
    names: set[NameKey] = field(default_factory=set)
    pattern: tuple[FileKey, re.Pattern[str]] | None = None  # folder, names of its pictures

    def writes_name(self, name: NameKey) -> bool:
        if name in self.names:
            return True
        if self.pattern is None:
            return False
        folder, pictures = self.pattern
        return name[:2] == folder and pictures.fullmatch(name[2]) is not None

    def overlaps(self, other: _Identity) -> bool:
        """Whether the two share a file, or one's names include a name of the other."""
        return (
            bool(self.files & other.files)
            or any(other.writes_name(name) for name in self.names)
            or any(self.writes_name(name) for name in other.names)
        )


def _file_key(path: str | Path) -> FileKey | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _name_key(path: str | Path) -> NameKey | None:
    real = Path(os.path.realpath(path))
    folder = _file_key(real.parent)
    return None if folder is None else (*folder, real.name)


def _identity(role: str, path: str) -> _Identity | None:
    """None for what is no file of its own: stdin/stdout, a device, a named pipe, a URL."""
    if path == STDIO_NAME or URL_MARK in path or is_stream_target(Path(path)):
        return None
    found = _Identity(role, path)
    if is_picture_pattern(path):
        for picture in existing_pictures(path):
            _add_file(found, picture)
        folder = _file_key(os.path.realpath(Path(path).parent))
        if folder is not None:
            found.pattern = (folder, picture_name_regex(path))
    else:
        _add_file(found, path)
    return found


def _add_file(found: _Identity, path: str | Path) -> None:
    key, name = _file_key(path), _name_key(path)
    if key is not None:
        found.files.add(key)
    if name is not None:
        found.names.add(name)


def check_distinct_files(inputs: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """Refuse, before any work and whatever ``-y`` says, an output that is one of the inputs or
    another output. Both map how the command line names a path (``-o``) to the path (None:
    not given)."""
    read = [i for role, path in inputs.items() if path and (i := _identity(role, path))]
    written = [i for role, path in outputs.items() if path and (i := _identity(role, path))]
    for index, output in enumerate(written):
        for source in read:
            if output.overlaps(source):
                raise UsageError(
                    f"{output.role} {output.path} would write over {source.role} {source.path} "
                    "(the same file): name another output"
                )
        for other in written[:index]:
            if output.overlaps(other):
                raise UsageError(
                    f"{other.role} {other.path} and {output.role} {output.path} are the same "
                    "file: name different outputs"
                )
