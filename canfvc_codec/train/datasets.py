"""Where the training sequences come from: ``--dataset builtin | vimeo90k | folder``.

* ``builtin`` (the default): the project's clips and photographs from the cache
  (:meth:`TrainingData.from_cache`), held in memory.
* ``vimeo90k``: the Vimeo-90k septuplets of the paper, ``--data-root`` being the folder that
  holds ``sep_trainlist.txt`` and ``sequences/NNNNN/NNNN/im1.png .. im7.png`` (or its parent,
  which holds ``vimeo_septuplet/``). Only the sequences of the training list are used; the test
  list is never read.
* ``folder``: any folder of videos (``.mp4``, ``.mkv``, ``.avi``, ...) and of frame folders (a
  folder of images, in name order, is one sequence), searched recursively.

Vimeo-90k holds 91,701 x 7 frames (about 220 GB as pixels), so the frames of ``vimeo90k`` and
``folder`` stay on disk: a sequence is a :class:`FrameFiles` or :class:`VideoFile`, which reads
only the frames of a drawn window, when it is drawn, in a DataLoader worker. Both behave like
the in-memory ``(T, H, W, 3)`` uint8 arrays of the built-in clips wherever
:class:`~canfvc_codec.train.data.TrainingData` uses them, so that crops, down-scaling, flips and
time reversal are the same for every data set. Scene cuts are found in the built-in clips only:
a Vimeo septuplet is one shot, and the sequences of a folder are taken to be single shots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from canfvc_codec.datasets import count_of
from canfvc_codec.errors import InputError, UsageError
from canfvc_codec.train.data import DEFAULT_STILL_FRACTION, TrainingData, VideoSource, load_stills

DATASETS = ("builtin", "vimeo90k", "folder")
VIMEO_FOLDER = "vimeo_septuplet"
VIMEO_TRAIN_LIST = "sep_trainlist.txt"
VIMEO_SEQUENCES = "sequences"
VIMEO_FRAMES = tuple(f"im{k}.png" for k in range(1, 8))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m")
# A container's frame count is an estimate; the last few frames it announces may not decode.
VIDEO_END_MARGIN = 2


class FrameFiles:
    """A sequence stored as one image per frame; behaves as a ``(T, H, W, 3)`` uint8 array
    whose frames are read from disk when indexed."""

    def __init__(self, folder: str, names: Sequence[str], height: int, width: int) -> None:
        self.folder = folder
        self.names = names  # one shared tuple for all Vimeo septuplets
        self.shape = (len(names), height, width, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        frames, rows, columns = key
        import cv2

        out = []
        for name in self.names[frames]:
            path = os.path.join(self.folder, name)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"cannot read the training frame {path}")
            if bgr.shape[:2] != self.shape[1:3]:
                raise InputError(
                    f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, not {self.shape[2]}x{self.shape[1]} "
                    "like the first frame of its sequence"
                )
            out.append(bgr[rows, columns, ::-1])
        return np.stack(out)


class VideoFile:
    """A video file; behaves as a ``(T, H, W, 3)`` uint8 array whose frames are decoded when
    indexed (OpenCV seeks to the first one)."""

    def __init__(self, path: str, frames: int, height: int, width: int) -> None:
        self.path = path
        self.shape = (frames, height, width, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        frames, rows, columns = key
        start, stop, _ = frames.indices(len(self))
        import cv2

        capture = cv2.VideoCapture(self.path)
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            out = []
            for _ in range(stop - start):
                ok, bgr = capture.read()
                if not ok:
                    raise InputError(f"cannot decode frames {start}..{stop - 1} of {self.path}")
                out.append(bgr[rows, columns, ::-1])
        finally:
            capture.release()
        return np.stack(out)


def _natural_key(name: str) -> list:
    """``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, from its header when Pillow is there."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
        return height, width
    except ImportError:
        import cv2

        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read the image {path}") from None
        return bgr.shape[0], bgr.shape[1]
    except OSError as err:
        raise InputError(f"cannot read the image {path}: {err}") from None


def _video_file(path: str) -> VideoFile | None:
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return None
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) - VIDEO_END_MARGIN
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    return VideoFile(path, max(frames, 0), height, width)


def vimeo_root(root: Path) -> Path:
    """The septuplet folder: ``root`` itself, or ``root/vimeo_septuplet``."""
    if not root.is_dir():
        raise InputError(f"--data-root {root} is not a folder")
    if not (root / VIMEO_TRAIN_LIST).is_file() and (root / VIMEO_FOLDER).is_dir():
        root = root / VIMEO_FOLDER
    if not (root / VIMEO_TRAIN_LIST).is_file() or not (root / VIMEO_SEQUENCES).is_dir():
        raise InputError(
            f"{root} is not a Vimeo-90k septuplet folder: expected {VIMEO_TRAIN_LIST} and "
            f"{VIMEO_SEQUENCES}/NNNNN/NNNN/im1.png..im7.png"
        )
    return root


def vimeo_sequences(root: Path) -> list[VideoSource]:
    """The septuplets of Vimeo-90k's training list, read lazily.

    Every septuplet is 448x256 in the published set; the size is read from the first one and a
    frame of another size is refused when it is read.
    """
    root = vimeo_root(root)
    entries = [line.strip() for line in (root / VIMEO_TRAIN_LIST).read_text().splitlines()]
    entries = [e for e in entries if e]
    if not entries:
        raise InputError(f"{root / VIMEO_TRAIN_LIST} lists no sequence")
    folders = [str(root / VIMEO_SEQUENCES / entry) for entry in entries]
    missing = [f for f in folders if not os.path.isdir(f)]
    if missing:
        raise InputError(
            f"{count_of(len(missing), 'sequence')} of {VIMEO_TRAIN_LIST} missing, "
            f"the first: {missing[0]}"
        )
    height, width = _image_size(os.path.join(folders[0], VIMEO_FRAMES[0]))
    cuts = np.zeros(len(VIMEO_FRAMES), dtype=bool)  # one shot each
    return [
        VideoSource(entry, FrameFiles(folder, VIMEO_FRAMES, height, width), cuts)
        for entry, folder in zip(entries, folders, strict=True)
    ]


def folder_sequences(root: Path) -> list[VideoSource]:
    """Every video file and every folder of images under ``root``, read lazily."""
    if not root.is_dir():
        raise InputError(f"--data-root {root} is not a folder")
    sources = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        images = sorted((f for f in files if f.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
        name = os.path.relpath(folder, root)
        if images:
            height, width = _image_size(os.path.join(folder, images[0]))
            frames = FrameFiles(folder, tuple(images), height, width)
            sources.append(VideoSource(name, frames, np.zeros(len(images), dtype=bool)))
        for file in sorted(files, key=_natural_key):
            if file.lower().endswith(VIDEO_SUFFIXES):
                path = os.path.join(folder, file)
                video = _video_file(path)
                if video is None:
                    raise InputError(f"OpenCV cannot open the video {path}")
                name = os.path.relpath(path, root)
                sources.append(VideoSource(name, video, np.zeros(len(video), dtype=bool)))
    if not sources:
        raise InputError(
            f"no video ({', '.join(VIDEO_SUFFIXES)}) and no folder of images under {root}"
        )
    return sources


def usable(sources: list[VideoSource], crop: int, frames: int, where: Path) -> list[VideoSource]:
    """The sequences with at least ``frames`` frames of at least ``crop`` x ``crop``."""
    kept = [s for s in sources if len(s.frames) >= frames and min(s.frames.shape[1:3]) >= crop]
    if not kept:
        raise InputError(
            f"none of the {count_of(len(sources), 'sequence')} under {where} has {frames} frames "
            f"of at least {crop}x{crop}"
        )
    return kept


def training_data(
    dataset: str,
    crop: int,
    frames: int,
    *,
    data_root: Path | None,
    clips: Path | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    use_stills: bool = True,
) -> TrainingData:
    """The sampler of ``dataset``; ``frames`` is the longest sequence training will draw."""
    if dataset == "builtin":
        if data_root is not None:
            raise UsageError("--data-root is for --dataset vimeo90k or folder")
        return TrainingData.from_cache(
            crop, clips=clips, seed=seed, device=device, use_stills=use_stills
        )
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r} ({', '.join(DATASETS)})")
    if data_root is None:
        raise UsageError(f"--dataset {dataset} needs --data-root")
    if clips is not None:
        raise UsageError("--clips is for --dataset builtin")
    root = Path(data_root)
    found = vimeo_sequences(root) if dataset == "vimeo90k" else folder_sequences(root)
    videos = usable(found, crop, frames, root)
    stills = load_stills() if use_stills else []
    data = TrainingData(
        videos, stills, crop, seed=seed, device=device, still_fraction=DEFAULT_STILL_FRACTION
    )
    data.sources = {
        "dataset": dataset,
        "root": str(root),
        "clips": [count_of(len(videos), "sequence")],
        "stills": ["skimage.data photographs with synthetic camera motion"] if stills else [],
    }
    return data
