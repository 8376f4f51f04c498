"""Data-parallel training: two gloo ranks against one process, torchrun end to end, the batch
stream, and the Vimeo-90k and folder data sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing

from canfvc_codec.errors import InputError, UsageError
from canfvc_codec.train import datasets
from canfvc_codec.train.batches import BatchStream, Request
from canfvc_codec.train.data import TrainingData, VideoSource, scene_cuts
from canfvc_codec.train.distributed import World, process_group, world_from_environment
from canfvc_codec.train.trainer import Trainer, TrainOptions
from tests.conftest import real_rgb_frames

CROP = 64
SEED = 3
STEPS = 3
RANKS = 2


def _frames() -> np.ndarray:
    frames = real_rgb_frames("bikes.mp4", 0, 8, 128, 128)
    return (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def _data(frames: np.ndarray) -> TrainingData:
    return TrainingData([VideoSource("bikes.mp4", frames, scene_cuts(frames))], [], CROP)


def _options(ckpt: Path, batch: int) -> TrainOptions:
    # The flow phase: no quantisation noise, so that one process can draw exactly what the
    # ranks draw together.
    return TrainOptions(
        config="tiny",
        device="cpu",
        crop=CROP,
        batch=batch,
        phase="flow",
        steps=STEPS,
        ckpt=ckpt,
        seed=SEED,
        progress=False,
        use_stills=False,
    )


def _rank(rank: int, rendezvous: str, folder: str, frames: np.ndarray) -> None:
    torch.set_num_threads(1)
    world = World(rank, RANKS, rank, local_size=RANKS)  # both ranks on this machine
    with process_group(world, "cpu", init_method=rendezvous):
        stream = BatchStream(_data(frames), 1, seed=SEED, rank=rank)
        trainer = Trainer(_options(Path(folder) / "ckpt", 1), data=stream, world=world)
        trainer.run()
        torch.save(trainer.model.state_dict(), Path(folder) / f"rank{rank}.pt")


class _Together:
    """The batches of both ranks as one batch: what one process must train on to match them."""

    def __init__(self, frames: np.ndarray) -> None:
        data = _data(frames)
        self.streams = [BatchStream(data, 1, seed=SEED, rank=r) for r in range(RANKS)]
        self.sources: dict = {}

    def next(self, request: Request):
        batches = [s.next(request) for s in self.streams]
        if isinstance(batches[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*batches, strict=True))
        return torch.cat(batches)

    def state_dict(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def test_two_ranks_train_as_one_process_on_both_batches(tmp_path) -> None:
    frames = _frames()
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    torch.multiprocessing.spawn(
        _rank, args=(rendezvous, str(tmp_path), frames), nprocs=RANKS, join=True
    )
    one = Trainer(_options(tmp_path / "one", RANKS), data=_Together(frames))
    one.run()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(RANKS)]
    moved = 0
    initial = Trainer(_options(tmp_path / "initial", 1), data=_Together(frames)).model
    for name, tensor in one.model.state_dict().items():
        for replica in ranks:
            assert torch.allclose(replica[name], tensor, rtol=1e-4, atol=1e-6), name
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # replicas stay identical
        moved += not torch.equal(initial.state_dict()[name], tensor)
    assert moved > 10  # SPyNet's weights did train
    checkpoint = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert checkpoint["progress"]["step"] == STEPS and checkpoint["options"]["ranks"] == RANKS
    assert checkpoint["data"] == {"seed": SEED, "drawn": STEPS}
    assert len(checkpoint["ranks_rng"]) == RANKS
    # The two ranks shared this machine's CPU: its time counts once, as one process's would.
    progress = checkpoint["progress"]
    assert progress["device_seconds"]["cpu"] == pytest.approx(progress["seconds"])


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


def _level(sequence: int, frame: int) -> int:
    """The grey level of frame ``frame`` of sequence ``sequence``: both readable from a crop."""
    return 60 * sequence + 6 * frame


def _flat(level: int, height: int = 64, width: int = 128) -> np.ndarray:
    return np.full((height, width, 3), level, dtype=np.uint8)


def _vimeo(root: Path) -> Path:
    """A Vimeo-90k-shaped folder: two training septuplets, one test septuplet."""
    top = root / "vimeo_septuplet"
    for sequence in (1, 2, 3):
        for frame in range(7):
            image = _flat(_level(sequence, frame))
            _write_png(
                top / "sequences" / "00001" / f"{sequence:04d}" / f"im{frame + 1}.png", image
            )
    (top / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (top / "sep_testlist.txt").write_text("00001/0003\n")
    return top


def _sequences_of(batch: torch.Tensor) -> set[int]:
    """The sequence of every item, checking that its frames are consecutive (either way)."""
    levels = (batch * 255).round().to(torch.int64)
    found = set()
    for item in levels:
        values = [int(frame.flatten()[0]) for frame in item]
        assert all(int(frame.min()) == int(frame.max()) for frame in item)
        steps = {b - a for a, b in zip(values, values[1:], strict=False)}
        assert steps in ({6}, {-6}), values  # in order, or reversed
        found.add(min(values) // 60)
    return found


def test_vimeo90k_reads_the_training_list_only(tmp_path) -> None:
    root = _vimeo(tmp_path)
    data = datasets.training_data("vimeo90k", CROP, 7, data_root=tmp_path, use_stills=False, seed=0)
    assert [v.name for v in data.videos] == ["00001/0001", "00001/0002"]
    assert data.sources["dataset"] == "vimeo90k"
    assert _sequences_of(data.sequences(12, 7)) == {1, 2}  # never the test list's 3
    assert _sequences_of(data.sequences(6, 3)) <= {1, 2}
    # The folder itself works as the root too; a broken layout is one clear error.
    assert len(datasets.vimeo_sequences(root)) == 2
    (root / "sep_trainlist.txt").write_text("00001/0001\n00001/0009\n")
    with pytest.raises(InputError, match="1 sequence of sep_trainlist.txt missing"):
        datasets.vimeo_sequences(root)
    (root / "sep_trainlist.txt").unlink()
    with pytest.raises(InputError, match="not a Vimeo-90k septuplet folder"):
        datasets.vimeo_sequences(root)


def test_batches_are_the_same_whatever_the_workers(tmp_path) -> None:
    _vimeo(tmp_path)
    data = datasets.training_data("vimeo90k", CROP, 7, data_root=tmp_path, use_stills=False)
    pairs = Request(2, flow_still_fraction=0.5)
    requests = [Request(7), Request(7), pairs, Request(5), Request(5)]
    inline = BatchStream(data, 3, seed=1, rank=1)
    drawn = [inline.next(r) for r in requests]
    workers = BatchStream(data, 3, seed=1, rank=1, workers=2)
    try:
        for request, expected in zip(requests, drawn, strict=True):
            got = workers.next(request)
            if request is pairs:
                assert isinstance(got, tuple) and len(got) == len(expected) == 3
                assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
            else:
                assert torch.equal(got, expected)
        # A resumed stream goes on with the same batches; another rank draws others.
        resumed = BatchStream(data, 3, seed=0, rank=1, workers=2)
        resumed.load_state_dict(inline.state_dict())
        assert torch.equal(resumed.next(Request(4)), inline.next(Request(4)))
        resumed.close()
    finally:
        workers.close()
    other = BatchStream(data, 3, seed=1, rank=0)
    assert not torch.equal(other.next(Request(7)), drawn[0])


def _write_video(path: Path, levels: list[int]) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for level in levels:
        writer.write(_flat(level, 64, 96))
    writer.release()


def test_folder_reads_videos_and_frame_folders(tmp_path) -> None:
    for frame in range(8):
        _write_png(tmp_path / "shots" / "a" / f"frame{frame}.png", _flat(_level(1, frame)))
    for frame in range(3):  # too short for the longest phase: left out
        _write_png(tmp_path / "shots" / "short" / f"{frame}.png", _flat(_level(3, frame)))
    (tmp_path / "empty").mkdir()
    _write_video(tmp_path / "clip.avi", [_level(2, frame) for frame in range(12)])
    data = datasets.training_data("folder", CROP, 7, data_root=tmp_path, use_stills=False)
    assert sorted(v.name for v in data.videos) == ["clip.avi", "shots/a"]
    # The natural order of the names: frame2 before frame10 would matter; here 0..7.
    batch = data.sequences(16, 5)
    levels = (batch * 255).round()[:, :, 0, 0, 0].tolist()
    seen = set()
    for values in levels:
        steps = [b - a for a, b in zip(values, values[1:], strict=False)]
        # Video frames are JPEG-coded: their levels may be off by a little.
        assert all(abs(abs(s) - 6) <= 2 for s in steps) and len({s > 0 for s in steps}) == 1
        seen.add(1 if min(values) < 110 else 2)
    assert seen == {1, 2}


def test_bad_data_roots_are_one_line_errors(tmp_path, capsys) -> None:
    from canfvc_codec.train.__main__ import main

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--dataset", "vimeo90k", "--data-root", str(tmp_path / "absent")], "is not a folder"),
        (["--dataset", "vimeo90k", "--data-root", str(empty)], "not a Vimeo-90k septuplet"),
        (["--dataset", "folder", "--data-root", str(empty)], "no video"),
        (["--dataset", "folder"], "needs --data-root"),
        (["--data-root", str(empty)], "--data-root is for --dataset vimeo90k or folder"),
    ]
    common = ["--config", "tiny", "--device", "cpu", "--crop", "64", "--steps", "1", "--quiet"]
    for k, (arguments, message) in enumerate(cases):
        with pytest.raises(SystemExit) as exit_info:
            main([*common, "--ckpt", str(tmp_path / f"ckpt{k}"), *arguments])
        assert exit_info.value.code != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("canfvc: ") and message in err and "\n" not in err, err


def test_the_world_comes_from_torchrun() -> None:
    assert world_from_environment({}) == World()
    world = world_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(3, 4, 1) and not world.is_main and world.is_distributed
    assert world.machines == 4  # without LOCAL_WORLD_SIZE, a machine per rank
    environ = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert world_from_environment(environ).machines == 2
    with pytest.raises(UsageError):
        world_from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UsageError):
        world_from_environment({**environ, "LOCAL_WORLD_SIZE": "0"})


def test_torchrun_trains_two_ranks_and_resumes(tmp_path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    for frame in range(8):
        _write_png(tmp_path / "data" / "a" / f"{frame}.png", real_frame(frame))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [
        torchrun, "--nproc-per-node", "2", "-m", "canfvc_codec.train", "--config", "tiny",
        "--device", "cpu", "--crop", "64", "--batch", "1", "--dataset", "folder",
        "--data-root", str(tmp_path / "data"), "--no-stills", "--ckpt", str(tmp_path / "ckpt"),
        "--plan-steps", "20", "--quiet",
    ]  # fmt: skip
    first = subprocess.run([*command, "--steps", "2"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "step 2, phase flow" in first.stderr
    second = subprocess.run(
        [*command, "--steps", "1", "--resume", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 0, second.stderr
    checkpoint = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert checkpoint["progress"]["step"] == 3 and checkpoint["data"]["drawn"] == 3
    assert checkpoint["options"]["ranks"] == 2 and len(checkpoint["ranks_rng"]) == 2
    rows = (tmp_path / "ckpt" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["2", "3"]


def real_frame(k: int) -> np.ndarray:
    frames = real_rgb_frames("bikes.mp4", k, 1, 96, 64)
    return (frames[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
