"""Motion search: the flow f_t that the encoder hands to the motion coder.

Only the encoder estimates motion; the decoder receives the coded flow f̂_t. So the estimator is
the encoder's choice, like a motion search in x265, and changes no bitstream rule. Two exist:

- ``dis``: OpenCV's DIS optical flow (Kroeger et al., 2016) on the luma of both frames, the
  default. On bikes' development frames its flow warps the previous frame onto the next one at
  31.0 dB PSNR-RGB, where the lite model's SPyNet reaches 23.4 dB and no motion 21.2 dB
  (``python -m canfvc_codec.lab.flow``).
- ``spynet``: the model's own flow network, the paper's choice: differentiable, on the model's
  device, and as good as its training.

The motion coders are trained on the flows of the estimator the encoder will use
(``canfvc train --motion-search``), since what they learn to code is that estimator's flow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from canfvc_codec.errors import UsageError

if TYPE_CHECKING:  # torch and numpy load when an estimator is made: the CLI lists names only
    import numpy as np
    from torch import Tensor

# (target frames, reference frames), each (N, 3, H, W) RGB in [0, 1] -> the flow (N, 2, H, W),
# in pixels, that backward-warps the reference onto the target.
FlowEstimator = Callable[["Tensor", "Tensor"], "Tensor"]

DIS, SPYNET = "dis", "spynet"
MOTION_SEARCHES = (DIS, SPYNET)
DEFAULT_MOTION_SEARCH = DIS
# Frames of a batch whose DIS flows are computed at once (OpenCV releases the GIL).
DIS_THREADS = 8
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601, what OpenCV's own RGB -> grey conversion uses
LEVELS = 255.0


def dis_flow() -> FlowEstimator:
    """OpenCV's DIS flow (medium preset) as a :data:`FlowEstimator`; needs ``opencv-python``."""
    import numpy as np
    import torch

    try:
        import cv2
    except ImportError:
        raise UsageError(
            "motion search 'dis' needs OpenCV (pip install opencv-python-headless); "
            "--motion-search spynet needs nothing more"
        ) from None
    local = threading.local()
    # As many workers as torch has threads, so that --threads bounds the motion search too.
    pool = ThreadPoolExecutor(max_workers=min(DIS_THREADS, torch.get_num_threads()))

    def one_pair(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
        if not hasattr(local, "dis"):
            local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        # DIS(a, b) gives f with a(p) ~ b(p + f): the flow that backward-warps b onto a.
        return local.dis.calc(target, reference, None)

    def grey(x: Tensor) -> np.ndarray:
        red, green, blue = LUMA_WEIGHTS
        luma = (red * x[:, 0] + green * x[:, 1] + blue * x[:, 2]) * LEVELS
        return luma.round().clamp(0, LEVELS).to(torch.uint8).cpu().numpy()

    def estimate(target: Tensor, reference: Tensor) -> Tensor:
        flows = list(pool.map(one_pair, list(grey(target)), list(grey(reference))))
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        return flow.to(device=target.device, dtype=target.dtype)

    return estimate


def motion_search(name: str) -> FlowEstimator | None:
    """The estimator called ``name``; None for ``spynet``, which is the model's own network."""
    if name == SPYNET:
        return None
    if name == DIS:
        return dis_flow()
    raise UsageError(f"unknown motion search {name!r} (known: {', '.join(MOTION_SEARCHES)})")
