"""Model size and compute: parameters per network and multiply-accumulates for a 1080p frame.

MACs are counted with ``torch.utils.flop_counter`` on a small frame and scaled to 1920x1088
(1080p padded to a multiple of 64). Every counted operation is a convolution or a matrix product
whose output size is proportional to the frame area when the sides divide by 64, so the scaling is
exact. Warping, pooling and element-wise operations are not counted (as in the paper's Table A2).

The encoder's motion search is the encoder's choice (:mod:`canfvc_codec.encoder.motion`): the
P-frame encode figures count every network the encoder runs besides it, and ``spynet`` is the cost
of the model's own search, which ``--motion-search spynet`` adds to them. The default search,
OpenCV's DIS, is not a network and is not counted.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from canfvc_codec.networks.config import ModelConfig
from canfvc_codec.networks.video import References, VideoModel, to_reference
from canfvc_codec.rates import Rates
from canfvc_codec.weights import model_config

REPORT_SIZE = (1088, 1920)  # 1080p padded to a multiple of 64
PROBE_SIZE = (64, 64)
FLOPS_PER_MAC = 2
PROBE_LAMBDA = 1024.0
PROBE_SEED = 0
GIGA = 1e9


def parameter_counts(model: VideoModel) -> dict[str, int]:
    """Parameters of each top-level network, e.g. ``{"intra": ..., "inter": ..., ...}``."""
    return {
        name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()
    }


def _counted(fn):
    """(fn's result, MACs it took)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, counter.get_total_flops() // FLOPS_PER_MAC


@torch.no_grad()
def frame_macs(model: VideoModel, size: tuple[int, int] = REPORT_SIZE) -> dict[str, int]:
    """MACs to encode and to decode an I-frame, a GOP's first P-frame and a later P-frame, and
    of one SPyNet motion search (``spynet``).

    The encoder's count includes decoding its own streams (it needs its references), not its
    motion search (see the module docstring).
    """
    model = model.eval()
    model.update()
    height, width = PROBE_SIZE
    generator = torch.Generator().manual_seed(PROBE_SEED)
    frames = torch.rand(3, 1, 3, height, width, generator=generator)
    scale = (size[0] * size[1]) // (height * width)
    macs: dict[str, int] = {}

    (streams, x_hat), macs["intra_encode"] = _counted(
        lambda: model.compress_intra(frames[0], PROBE_LAMBDA)
    )
    _, macs["intra_decode"] = _counted(
        lambda: model.decompress_intra(streams, PROBE_SIZE, PROBE_LAMBDA)
    )
    refs = References([to_reference(x_hat)])
    rates = Rates.uniform(PROBE_LAMBDA)
    _, macs["spynet"] = _counted(lambda: model.spynet(frames[1], refs.frames[-1]))
    for key, frame in (("first_p", frames[1]), ("p", frames[2])):
        (streams, x_hat, flow_hat), macs[f"{key}_encode"] = _counted(
            lambda frame=frame, refs=refs: model.compress_inter(
                frame, refs, rates, _no_motion(frame)
            )
        )
        _, macs[f"{key}_decode"] = _counted(
            lambda streams=streams, refs=refs: model.decompress_inter(streams, refs, rates)
        )
        refs = refs.push(to_reference(x_hat), flow_hat)
    return {key: value * scale for key, value in macs.items()}


def _no_motion(target: torch.Tensor) -> torch.Tensor:
    """A flow that costs no network MACs (the counts leave the motion search out)."""
    return target.new_zeros(target.shape[0], 2, *target.shape[-2:])


def model_report(name: str) -> dict:
    """What ``canfvc info --model NAME`` prints: parameters per network and 1080p MACs.

    ``name`` is a configuration (``tiny``, ``lite``, ``full``), ``random-<config>``, a model
    name under ``models/`` or a model file; only its configuration matters.
    """
    config: ModelConfig = model_config(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PROBE_SEED)
        model = VideoModel(config)
    params = parameter_counts(model)
    total = sum(params.values())
    macs = frame_macs(model)
    return {
        "model": name,
        "config": config.name,
        "parameters": params,
        "parameters_total": total,
        "parameters_p_frame": total - params["intra"],
        "frame_size": f"{REPORT_SIZE[1]}x{REPORT_SIZE[0]}",
        "macs": macs,
        "gmacs": {key: round(value / GIGA, 1) for key, value in macs.items()},
    }
