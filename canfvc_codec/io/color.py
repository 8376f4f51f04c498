"""YUV 4:2:0 <-> RGB in torch: BT.709 / BT.601 matrices, limited / full range, 8 and 10 bit.

The codec works on RGB in [0, 1]; files hold YUV 4:2:0. The conversion lives here, in the project,
rather than in ffmpeg's swscale, so that encoder, decoder and metrics see the same numbers.

Chroma resampling is built so that ``rgb_to_yuv(yuv_to_rgb(f)) == f`` up to rounding:

- down-sampling is the 2x2 mean (chroma samples sit at the centre of each 2x2 luma block);
- up-sampling is bilinear plus a correction that puts back, block by block, what the 2x2 mean of
  the bilinear result lost. The 2x2 mean of the up-sampled plane is therefore exactly the input
  plane, while the picture keeps bilinear's smoothness.

Chroma siting labels (C420mpeg2, C420paldv) are accepted but chroma is always treated as centred.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from canfvc_codec.io.frame import CHROMA_SUBSAMPLING, Frame, VideoInfo, dtype_for

# Luma weights (Kr, Kb) of each matrix; Kg = 1 - Kr - Kb.
LUMA_WEIGHTS = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
# Limited ("TV") range at 8 bits: luma 16..235, chroma 16..240 centred on 128.
LIMITED_LUMA_OFFSET = 16
LIMITED_LUMA_SPAN = 219
LIMITED_CHROMA_SPAN = 224
BITS_8 = 8


def _weights(matrix: str) -> tuple[float, float, float]:
    try:
        kr, kb = LUMA_WEIGHTS[matrix]
    except KeyError:
        raise ValueError(f"unknown colour matrix {matrix!r}") from None
    return kr, 1.0 - kr - kb, kb


def _range(info: VideoInfo) -> tuple[float, float, float, float]:
    """(luma offset, luma span, chroma centre, chroma span) in code values of the bit depth."""
    scale = 1 << (info.bit_depth - BITS_8)
    centre = float(1 << (info.bit_depth - 1))
    if info.full_range:
        peak = float((1 << info.bit_depth) - 1)
        return 0.0, peak, centre, peak
    return (
        float(LIMITED_LUMA_OFFSET * scale),
        float(LIMITED_LUMA_SPAN * scale),
        centre,
        float(LIMITED_CHROMA_SPAN * scale),
    )


def _downsample(plane: torch.Tensor) -> torch.Tensor:
    """2x2 mean of a (..., H, W) plane."""
    return F.avg_pool2d(plane, CHROMA_SUBSAMPLING)


def _upsample(plane: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 up-sampling whose 2x2 mean is exactly the input (see the module docstring)."""
    smooth = F.interpolate(
        plane, scale_factor=CHROMA_SUBSAMPLING, mode="bilinear", align_corners=False
    )
    residual = plane - _downsample(smooth)
    return smooth + residual.repeat_interleave(CHROMA_SUBSAMPLING, -2).repeat_interleave(
        CHROMA_SUBSAMPLING, -1
    )


def _plane(
    array: np.ndarray, device: torch.device | str | None, dtype: torch.dtype
) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float64)).to(device, dtype)[None, None]


def yuv_to_rgb(
    frame: Frame,
    info: VideoInfo,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A YUV 4:2:0 frame as an RGB tensor (3, H, W) in [0, 1], float32 unless ``dtype`` says."""
    kr, kg, kb = _weights(info.matrix)
    y_off, y_span, c_mid, c_span = _range(info)
    y = (_plane(frame.y, device, dtype) - y_off) / y_span
    chroma = torch.cat([_plane(frame.u, device, dtype), _plane(frame.v, device, dtype)], dim=1)
    cb, cr = ((_upsample((chroma - c_mid) / c_span))[0]).unbind(0)
    y = y[0, 0]
    r = y + 2.0 * (1.0 - kr) * cr
    b = y + 2.0 * (1.0 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return torch.stack([r, g, b]).clamp_(0.0, 1.0)


def rgb_to_yuv(rgb: torch.Tensor, info: VideoInfo) -> Frame:
    """An RGB tensor (3, H, W) in [0, 1] as a YUV 4:2:0 frame, rounded and clipped to the depth."""
    if rgb.dim() != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected an RGB tensor of shape (3, H, W), got {tuple(rgb.shape)}")
    kr, kg, kb = _weights(info.matrix)
    y_off, y_span, c_mid, c_span = _range(info)
    # float64 on the CPU: the decoded YUV (and its CRC in the bitstream) must not depend on the
    # device or library that produced ``rgb``.
    r, g, b = rgb.detach().to("cpu", torch.float64).clamp(0.0, 1.0).unbind(0)
    y = kr * r + kg * g + kb * b
    cb = (b - y) / (2.0 * (1.0 - kb))
    cr = (r - y) / (2.0 * (1.0 - kr))
    chroma = _downsample(torch.stack([cb, cr])[None])[0]
    peak = (1 << info.bit_depth) - 1
    dtype = dtype_for(info.bit_depth)

    def quantise(plane: torch.Tensor, offset: float, span: float) -> np.ndarray:
        codes = torch.round(plane * span + offset).clamp_(0, peak)
        return codes.cpu().numpy().astype(dtype)

    return Frame(
        quantise(y, y_off, y_span),
        quantise(chroma[0], c_mid, c_span),
        quantise(chroma[1], c_mid, c_span),
    )
