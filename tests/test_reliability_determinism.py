"""Streams decode identically under other numerical paths (docs/determinism.md).

The 96-frame test encodes a real clip with the default numerics and decodes it in another
interpreter with oneDNN off, with channels-last layout and with one thread: each path changes
float results (checked below, so that the test can fail), none may change the decoded video.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from canfvc_codec.codec import Decoder, decode_video
from canfvc_codec.encoder.gop import Encoder
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.errors import UsageError
from canfvc_codec.io import Frame, VideoInfo, open_writer
from canfvc_codec.lab.determinism import (
    OTHER_PATHS,
    boundary_distance,
    compare_planes,
    compare_scales,
    flip_probability,
    run_harness,
)
from canfvc_codec.numerics import (
    DECODER_DTYPE,
    DEFAULT_PATH,
    NUMERIC_PATHS,
    Numerics,
    get_numeric_path,
    near_ties,
    numeric_path,
    resolve_tie,
)
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model
from tests.conftest import real_rgb_frames, real_yuv_frames

RATES = Rates.uniform(700.0)

FRAMES = 96
WIDTH, HEIGHT = 64, 64
GOP = 32
# The bar; float64 decoding is expected to meet it with every sample identical.
WITHIN_ONE_MIN = 0.9999
FLOAT32_ULP = float(np.finfo(np.float32).eps)


def _write_clip(path, count: int) -> None:
    info = VideoInfo(WIDTH, HEIGHT, 25, 1, 8, "bt709", False, count)
    with open_writer(str(path), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 0, count, WIDTH, HEIGHT):
            writer.write(Frame(y, u, v))


def test_96_frames_decode_identically_under_every_other_path(tmp_path):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, FRAMES)
    results = run_harness(clip, tmp_path / "work", model="random-tiny", gop=GOP)
    runs = [run for run in results["runs"] if "path" in run]
    encode = next(run["encode"] for run in results["runs"] if "encode" in run)
    assert {run["path"] for run in runs} == set(OTHER_PATHS)
    assert encode["frames"] == FRAMES and encode["sigma_values"] > 0
    for run in runs:
        figures = {k: run[k] for k in ("path", "identical_fraction", "max_diff", "index_flips")}
        print("determinism:", figures, "sigma drift", run["sigma_max_rel_dev"])
        assert run["failure"] is None and run["decoded"] == FRAMES
        assert run["within_one_fraction"] >= WITHIN_ONE_MIN
        # float64 leaves nothing to chance at this size: bit-exact, no table changed.
        assert run["identical_fraction"] == 1.0 and run["crc_mismatches"] == 0
        assert run["index_flips"] == 0 and run["sigma_max_rel_dev"] < FLOAT32_ULP


def test_the_other_paths_really_change_float32_results():
    """Paths that all computed the same floats as the default would make the harness vacuous.
    Which ones differ depends on the CPU (with AVX-512, oneDNN may compute a channels-last
    convolution exactly as the default one), so at least one must, and each only by rounding."""
    model, _ = random_model("tiny")
    analysis = model.intra.steps[0].analysis
    frame = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    outputs = {}
    with torch.no_grad():
        reference = analysis(frame)
        for name in ("mkldnn-off", "channels-last"):
            path = get_numeric_path(name)
            with numeric_path(path):
                network = copy.deepcopy(analysis)
                if path.channels_last:
                    network.to(memory_format=torch.channels_last)
                outputs[name] = network(frame)
    assert any(not torch.equal(reference, other) for other in outputs.values())
    for other in outputs.values():
        assert torch.allclose(reference, other, rtol=0, atol=1e-5)


def test_numeric_path_restores_the_process_switches():
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    with numeric_path(NUMERIC_PATHS["threads-1"]):
        assert torch.get_num_threads() == 1
    with numeric_path(NUMERIC_PATHS["mkldnn-off"]):
        assert not torch.backends.mkldnn.enabled
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == (threads, mkldnn)


def test_numerics_from_options():
    assert Numerics.from_options() == Numerics(DECODER_DTYPE, NUMERIC_PATHS[DEFAULT_PATH])
    assert Numerics.from_options("float32", "channels-last").path.channels_last
    with pytest.raises(UsageError, match="unknown numeric path 'gpu'"):
        Numerics.from_options(path="gpu")
    with pytest.raises(UsageError, match="unknown numeric type 'float16'"):
        Numerics.from_options("float16")


def test_the_codec_decodes_in_float64_by_default():
    assert EncodeOptions().numerics.dtype == DECODER_DTYPE == torch.float64
    assert decode_video.__kwdefaults__["numerics"].dtype == torch.float64


def test_compare_planes_counts_differences():
    reference = np.array([10, 20, 30, 40], np.uint8)
    figures = compare_planes(reference, np.array([10, 21, 30, 43], np.uint8))
    assert figures == {"identical_fraction": 0.5, "within_one_fraction": 0.75, "max_diff": 3}
    truncated = compare_planes(reference, reference[:2])
    assert truncated["identical_fraction"] == 0.5 and truncated["max_diff"] > 255


def test_compare_scales_finds_table_flips():
    from canfvc_codec.entropy.scale_table import BOUNDARIES

    edge = BOUNDARIES[10]
    reference = [np.array([1.0, edge * (1 + 1e-9)]), np.array([2.0, 3.0])]
    nudged = [np.array([1.0, edge * (1 - 1e-9)]), np.array([2.0, 3.0 * (1 + 1e-3)])]
    # Call 0 belongs to the I-frame 0; calls 1 and 2 to the P-frame 1.
    result = compare_scales(reference, nudged, ["I", "P"])
    assert result["index_flips"] == 1 and result["first_flip_frame"] == 0
    same = compare_scales(reference, reference, ["I", "P"])
    assert same == {"index_flips": 0, "first_flip_frame": None, "sigma_max_rel_dev": 0.0}


def test_boundary_distance_and_flip_estimate():
    from canfvc_codec.entropy.scale_table import BOUNDARIES

    distances = boundary_distance(np.array([BOUNDARIES[5], BOUNDARIES[5] * np.exp(0.01), -1.0]))
    assert distances[0] == 0.0 and distances[1] == pytest.approx(0.01) and distances[2] == np.inf
    assert flip_probability(0.0, 10**6) == 0.0
    assert flip_probability(1e-7, 10**6) == pytest.approx(2e-7 / 0.1232 * 1e6, rel=0.01)


def test_a_rounding_tie_is_resolved_by_the_crc():
    """A reference sample within 1e-12 of a tie: the decoder rounded it up, the encoder down.
    The check (the CRC, here a stand-in) picks the encoder's rounding among the near-tie samples."""
    level = 100
    unrounded = torch.full((1, 3, 4, 4), 0.25, dtype=torch.float64)
    unrounded[0, 1, 2, 3] = (level + 0.5 + 1e-12) / 255  # rounds up, to 101
    reference = torch.round(unrounded * 255) / 255
    encoders = reference.clone()
    encoders[0, 1, 2, 3] = level / 255

    fixed = resolve_tie(unrounded, reference, 255.0, lambda ref: torch.equal(ref, encoders))
    assert fixed is not None and torch.equal(fixed, encoders)
    assert resolve_tie(unrounded, reference, 255.0, lambda ref: False) is None
    far = torch.full((1, 3, 4, 4), 0.25, dtype=torch.float64)  # no sample near a tie
    assert len(near_ties(far, 255.0)) == 0
    assert resolve_tie(far, torch.round(far * 255) / 255, 255.0, lambda ref: True) is None


def test_decoder_applies_a_resolved_tie_to_its_references():
    model, _ = random_model("tiny")
    frames = real_rgb_frames(count=1, width=64, height=64)
    encoder = Encoder(copy.deepcopy(model), RATES, IntraSchedule(0), 64, 64, torch.device("cpu"))
    frame_type, streams, recon = encoder.encode(frames[0])
    decoder = Decoder(copy.deepcopy(model), RATES, 64, 64, torch.device("cpu"))
    assert torch.equal(decoder.decode(frame_type, streams), recon)
    # Pretend sample (0, 5, 7) sat on a tie and this machine rounded it the other way.
    level = round(float(recon[0, 5, 7]) * 255)
    other = level + 1 if level < 255 else level - 1
    decoder._unrounded = decoder._unrounded.clone()
    decoder._unrounded[0, 0, 5, 7] = (min(level, other) + 0.5 + 1e-12 * (other - level)) / 255
    decoder.refs.frames[-1][0, 0, 5, 7] = other / 255
    fixed = decoder.resolve_tie(lambda rgb: torch.equal(rgb, recon))
    assert fixed is not None and torch.equal(fixed, recon)
    assert torch.equal(decoder.refs.frames[-1][0, :, :64, :64], recon)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cross_device(tmp_path, encode_device: str, decode_device: str, frames: int) -> dict:
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, frames)
    results = run_harness(
        clip,
        tmp_path / "work",
        model="random-tiny",
        gop=GOP,
        paths=(DEFAULT_PATH,),
        encode_device=encode_device,
        decode_device=decode_device,
    )
    assert (results["encode_device"], results["decode_device"]) == (encode_device, decode_device)
    (run,) = [run for run in results["runs"] if "path" in run]
    print(f"determinism {encode_device}->{decode_device}:", run)
    return run


def test_the_harness_names_its_devices_and_decodes_with_the_encoders_numerics(tmp_path):
    run = _cross_device(tmp_path, "cpu", "cpu", 4)
    assert run["failure"] is None and run["decoded"] == 4
    assert run["identical_fraction"] == 1.0 and run["index_flips"] == 0


@CUDA
@pytest.mark.parametrize("devices", [("cuda", "cpu"), ("cpu", "cuda")])
def test_96_frames_decode_across_cpu_and_cuda(tmp_path, devices):
    run = _cross_device(tmp_path, *devices, FRAMES)
    assert run["failure"] is None and run["decoded"] == FRAMES
    assert run["within_one_fraction"] >= WITHIN_ONE_MIN
