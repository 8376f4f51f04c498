"""The encoder's motion search: OpenCV's DIS flow, or the model's SPyNet."""

from __future__ import annotations

import io

import pytest
import torch

from canfvc_codec.bitstream import CvcReader
from canfvc_codec.codec import encode_video
from canfvc_codec.encoder import motion
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.errors import UsageError
from canfvc_codec.io import open_reader
from canfvc_codec.networks import References
from canfvc_codec.weights import random_model
from tests.test_codec import MODEL, _write_clip

SHIFT = 3  # pixels
WIDTH, HEIGHT = 96, 64


def test_dis_finds_a_known_shift(rgb_frames) -> None:
    picture = rgb_frames(start=60, count=1, width=WIDTH + SHIFT, height=HEIGHT)
    reference, target = picture[..., :WIDTH], picture[..., SHIFT:]  # target(x) = reference(x + 3)
    flow = motion.dis_flow()(target, reference)
    assert flow.shape == (1, 2, HEIGHT, WIDTH) and flow.dtype == target.dtype
    inner = flow[0, :, 8:-8, 8 : -8 - SHIFT]  # away from the borders and the uncovered columns
    assert torch.allclose(inner[0].median(), torch.tensor(float(SHIFT)), atol=0.25)
    assert inner[1].abs().median() < 0.25


def test_names() -> None:
    assert motion.motion_search("spynet") is None  # the model's own network
    assert callable(motion.motion_search("dis"))
    assert motion.DEFAULT_MOTION_SEARCH in motion.MOTION_SEARCHES
    with pytest.raises(UsageError, match="unknown motion search"):
        motion.motion_search("full-search")


def test_the_model_codes_the_flow_of_its_estimator(rgb_frames) -> None:
    model, _ = random_model("tiny")
    model.eval()
    reference, x = rgb_frames(start=30, count=2, width=64, height=64).split(1)
    given = torch.full((1, 2, 64, 64), 1.5)
    with torch.no_grad():
        out = model(x, 1024.0, References([reference]), flow=given)
    assert torch.equal(out.flow, given)
    with torch.no_grad():
        assert torch.equal(
            model(x, 1024.0, References([reference])).flow, model.spynet(x, reference)
        )


def test_the_search_changes_the_p_frames_motion_not_the_i_frame(tmp_path) -> None:
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 96, 64, 2, start=100)
    streams = {}
    for name in motion.MOTION_SEARCHES:
        # A high motion λ, where the random tiny motion coder sends more than zeros.
        options = EncodeOptions(
            gop=0, adaptive_intra=False, motion_search=name, model=MODEL, motion_lmbda=2048.0
        )
        sink = io.BytesIO()
        with open_reader(str(clip)) as reader:
            encode_video(reader, sink, options, progress=False)
        streams[name] = [r.streams for r in CvcReader(io.BytesIO(sink.getvalue()))]
    dis, spynet = streams["dis"], streams["spynet"]
    assert dis[0] == spynet[0]  # the I-frame
    assert dis[1][:2] != spynet[1][:2]  # the P-frame's motion streams
