"""Model files: fp16 save/load, model ids, lookup by id, untrained models, mismatches."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from canfvc_codec import weights
from canfvc_codec.codec import decode_video, encode_video
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.errors import ModelError
from canfvc_codec.folders import MODELS_ENV
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.networks import VideoModel, get_config
from canfvc_codec.weights import (
    UNTRAINED_WARNING,
    find_model_by_id,
    load_model,
    load_model_by_id,
    model_config,
    random_model,
    save_model,
)
from tests.conftest import real_yuv_frames


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty user model folder, and no published models."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(MODELS_ENV, str(folder))
    monkeypatch.setattr(weights, "PACKAGE_MODELS", tmp_path / "published")
    return folder


def _trained_like(seed: int) -> VideoModel:
    torch.manual_seed(seed)
    return VideoModel(get_config("tiny"))


def test_save_and_load_round_trip(models_dir, rgb_frames):
    model = _trained_like(5)
    path = models_dir / "canfvc-test.pt"
    model_id = save_model(model, path, card={"trained_on": "nothing"})
    assert model_id == hashlib.sha256(path.read_bytes()).digest()[:8].hex()
    loaded, loaded_id = load_model("test")
    assert loaded_id.hex() == model_id
    assert not loaded.training
    # Weights are stored in fp16; the original model is left untouched.
    original = model.state_dict()["inter.steps.0.analysis.0.weight"]
    stored = loaded.state_dict()["inter.steps.0.analysis.0.weight"]
    assert torch.equal(stored, original.half().float())
    assert original.dtype == torch.float32
    # Loading twice gives the same coder: streams decode identically with either copy.
    again, _ = load_model(str(path))
    x = rgb_frames(count=1, width=64, height=64)
    streams, x_hat = loaded.compress_intra(x, 512.0)
    assert torch.equal(again.decompress_intra(streams, (64, 64), 512.0), x_hat)
    assert find_model_by_id(loaded_id) == path
    assert model_config(str(path)) == get_config("tiny")


def test_missing_and_broken_models_are_model_errors(models_dir, monkeypatch):
    with pytest.raises(ModelError, match="random-lite"):
        load_model("lite")
    (models_dir / "canfvc-broken.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable model file"):
        load_model("broken")
    # Anything with an extension is a file, even one that is not a model: a clear refusal,
    # not a search for a model called "clip.y4m".
    monkeypatch.chdir(models_dir)
    Path("clip.y4m").write_bytes(b"YUV4MPEG2 W64 H48\n")
    with pytest.raises(ModelError, match="clip.y4m: not a readable model file"):
        load_model("clip.y4m")
    with pytest.raises(ModelError, match="notes.txt does not exist"):
        load_model("notes.txt")
    with pytest.raises(ModelError, match="unknown model"):
        load_model("random-huge")
    with pytest.raises(ModelError, match="no model with id"):
        load_model_by_id(b"\x00" * 8)


def test_random_models_are_reproducible_and_warn(capfd):
    first, first_id = load_model("random-tiny")
    assert UNTRAINED_WARNING in capfd.readouterr().err
    _, second_id = random_model("tiny")
    assert first_id == second_id
    assert load_model_by_id(first_id)[1] == first_id


def _encode_with(model: str, tmp_path) -> bytes:
    info = VideoInfo(64, 64, 25, 1, 8, "bt709", False, 1)
    clip = tmp_path / "clip.yuv"
    with open_writer(str(clip), info, overwrite=True) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 0, 1, 64, 64):
            writer.write(Frame(y, u, v))
    sink = io.BytesIO()
    with open_reader(str(clip), size=(64, 64)) as reader:
        encode_video(reader, sink, EncodeOptions(model=model, device="cpu"), progress=False)
    return sink.getvalue()


def test_decoder_finds_the_model_by_id_and_rejects_another(models_dir, tmp_path):
    save_model(_trained_like(1), models_dir / "canfvc-one.pt")
    save_model(_trained_like(2), models_dir / "canfvc-two.pt")
    data = _encode_with("one", tmp_path)

    def output(info):
        return open_writer(str(tmp_path / "out.yuv"), info, overwrite=True)

    summary = decode_video(io.BytesIO(data), output, device="cpu", progress=False)
    assert summary["frames"] == 1
    with pytest.raises(ModelError, match="encoded with model"):
        decode_video(io.BytesIO(data), output, device="cpu", model="two", progress=False)


def test_models_are_found_in_the_user_folder_before_the_package(tmp_path, monkeypatch):
    published = tmp_path / "published"
    save_model(_trained_like(1), published / "canfvc-one.pt")
    shipped_id = save_model(_trained_like(2), published / "canfvc-two.pt")
    monkeypatch.setattr(weights, "PACKAGE_MODELS", published)
    # Without $CANFVC_MODELS the user's folder is models/ in the user cache.
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path / "cache"))
    user = tmp_path / "cache" / "models"
    user_id = save_model(_trained_like(3), user / "canfvc-two.pt")
    assert load_model("one")[1] == file_id(published / "canfvc-one.pt")
    assert load_model("two")[1].hex() == user_id  # the user's copy comes first
    assert find_model_by_id(bytes.fromhex(shipped_id)) == published / "canfvc-two.pt"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "elsewhere"))
    assert load_model("two")[1].hex() == shipped_id
    with pytest.raises(ModelError, match="no canfvc-three.pt in"):
        load_model("three")


def file_id(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()[:8]


def test_the_published_models_are_in_the_package():
    """The wheel ships canfvc_codec/models (setup.cfg's package data); in a checkout it is the
    repository's models/, so a published model is found by name without any setting."""
    published = sorted(p.name for p in weights.PACKAGE_MODELS.glob("*.pt"))
    repository = sorted(p.name for p in (Path(__file__).parent.parent / "models").glob("*.pt"))
    assert published == repository and published


LOAD_WITHOUT_THE_FETCHER = """
import sys
from canfvc_codec.weights import load_model, model_folders
model_folders()
load_model("random-tiny")
assert "canfvc_codec.datasets" not in sys.modules, "loading a model imported the data fetcher"
"""


def test_loading_a_model_never_imports_the_data_fetcher(tmp_path):
    # A fresh interpreter: in this one, other tests have imported the fetcher already.
    env = {**os.environ, "CANFVC_CACHE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THE_FETCHER], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
