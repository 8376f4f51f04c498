"""Bounded memory: the networks of a large frame computed in horizontal stripes.

Why: the decoder runs in float64 (:mod:`canfvc_codec.numerics`), and PyTorch's CPU convolutions
for float64 unfold their input (im2col): a 3x3 convolution over 64 channels of a 1080p frame
would hold a 9.6 GB buffer, and the full-resolution U-Nets several 1 GB activations at once.

Three mechanisms:

- a stride-1 convolution in float64 on a CPU is computed without an unfolded buffer at all, one
  matrix product per kernel tap over a row stripe (:func:`shifted_products_conv2d`): the same
  products summed in another order (float64 results move by ~1e-16), and faster;
- every other convolution and transposed convolution whose unfolded buffer would exceed
  :data:`UNFOLD_BUDGET_BYTES` computes its output rows in stripes, each from the input rows it
  needs (:func:`striped_conv2d`, :func:`striped_conv_transpose2d`), exact per output element
  (each output value is the same sum of the same products as without stripes), unless oneDNN
  computes it (float32 on a CPU: the encoder's analysis and refinement), which unfolds nothing;
- the fully convolutional full-resolution networks (the U-Nets of flow extrapolation and motion
  compensation, the quality enhancement) run on row stripes of the frame with a halo wider than
  their receptive field, and keep only each stripe's own rows (:func:`run_in_stripes`).

The stripe layout depends only on the frame size, so encoder and decoder compute the same way;
a different layout would be one more numerical path, harmless in float64 (docs/determinism.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Largest unfolded (im2col) buffer one convolution call may build. Small enough for the C
# allocator to reuse freed buffers (glibc maps blocks above 32 MiB afresh for every call, and the
# kernel's zeroing of their pages took half of a 640x272 decode's CPU time at 192 MiB), large
# enough that the matrix products stay efficient (a few rows of a 1080p frame per call).
UNFOLD_BUDGET_BYTES = 16 << 20
# Output rows per call of the shifted products: small enough that the stripe's padded input (11
# rows of 64 channels of a 1080p frame: 10 MiB) stays in cache across the nine products of a 3x3
# kernel, large enough that each product is an efficient one. Measured on
# 64 -> 64 channels at 640x272, one thread: 33.9 / 34.5 / 31.3 / 28.2 GFLOP/s at 4 / 8 / 16 / 32
# rows, against 25.6 for the unfolded convolution.
SHIFTED_PRODUCT_ROWS = 8
# A convolution with this attribute true keeps PyTorch's own float64 kernel (a numerical path of
# docs/determinism.md: VideoModel.use_library_convolutions).
LIBRARY_CONVOLUTIONS = "library_convolutions"
# Full-resolution networks run on stripes of at most this many pixels (plus halos) ...
STRIPE_PIXELS = 256 * 1920
# ... whose heights are multiples of this (the U-Nets halve the size twice).
STRIPE_ALIGN = 4
# Halos: rows above and below a stripe that the network sees but whose outputs are dropped.
# Measured receptive-field radii: 26 rows for the U-Net, 14 for the quality enhancement. A network
# that works at 1/scale of the resolution (space-to-depth) sees scale times as far, needs heights
# that divide by scale times as much, and holds scale² times fewer values per pixel, so its
# halo, alignment and stripe size all grow with its ``scale``.
UNET_HALO = 32
ENHANCE_HALO = 16


@dataclass(frozen=True)
class StripeLayout:
    """How one full-resolution network is cut into row stripes."""

    halo: int
    align: int
    max_pixels: int

    @classmethod
    def scaled(cls, halo: int, scale: int) -> StripeLayout:
        return cls(halo * scale, STRIPE_ALIGN * scale, STRIPE_PIXELS * scale * scale)


# Types whose CPU convolutions oneDNN computes without an unfolded buffer.
ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def library_unfolds(x: Tensor) -> bool:
    """Whether PyTorch's convolutions of ``x`` may build an unfolded (im2col) buffer: everywhere
    but on a CPU with oneDNN in a type it computes. Striping such a convolution only adds calls
    (the encoder's refinement ran three times slower through them, docs/encoder.md)."""
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    return not (x.device.type == "cpu" and x.dtype in ONEDNN_DTYPES and onednn)


def _rows_per_call(bytes_per_row: int) -> int:
    return max(1, UNFOLD_BUDGET_BYTES // max(bytes_per_row, 1))


def striped_conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` with the output computed in row stripes when its unfolded input is large."""
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    plain = (
        conv.groups != 1
        or conv.dilation != (1, 1)
        or isinstance(conv.padding, str)
        or not library_unfolds(x)
    )
    height, width = x.shape[-2:]
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    row_bytes = conv.in_channels * kh * kw * out_w * x.element_size() * x.shape[0]
    rows = _rows_per_call(row_bytes)
    if plain or rows >= out_h:
        return conv._conv_forward(x, conv.weight, conv.bias)
    out = x.new_empty(x.shape[0], conv.out_channels, out_h, out_w)
    for start in range(0, out_h, rows):
        stop = min(start + rows, out_h)
        # Input rows of output rows [start, stop) in the zero-padded frame, then in x.
        first, last = start * sh - ph, (stop - 1) * sh - ph + kh
        part = x[..., max(first, 0) : min(last, height), :]
        part = F.pad(part, (0, 0, max(-first, 0), max(last - height, 0)))
        out[..., start:stop, :] = F.conv2d(part, conv.weight, conv.bias, (sh, sw), (0, pw))
    return out


def uses_shifted_products(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether :func:`shifted_products_conv2d` computes ``conv(x)``: a plain stride-1 convolution
    with zero padding, on a contiguous (NCHW) float64 tensor on a CPU, where PyTorch would unfold.
    Elsewhere PyTorch's own kernels (oneDNN, cuDNN) need no help."""
    return (
        x.dtype == torch.float64
        and x.device.type == "cpu"
        and x.is_contiguous()
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not getattr(conv, LIBRARY_CONVOLUTIONS, False)
    )


def shifted_products_conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a stride-1 convolution, as one matrix product per kernel tap.

    Why: PyTorch's float64 CPU convolution copies each input value kh*kw times into an unfolded
    buffer and then multiplies once; the copy costs about as much as the product. Here each
    stripe of :data:`SHIFTED_PRODUCT_ROWS` output rows adds up kh*kw products of one tap's
    weights (out x in channels) with the zero-padded input stripe, flattened with the padded width
    as its row length: the tap at (i, j) is then the same matrix shifted by ``i * row + j``
    columns, a view. Each product also fills the padding columns of every row, which are dropped.
    """
    kh, kw = conv.kernel_size
    ph, pw = conv.padding
    batch, _, height, width = x.shape
    out_h, out_w = height + 2 * ph - kh + 1, width + 2 * pw - kw + 1
    row = width + 2 * pw
    taps = conv.weight.permute(2, 3, 0, 1).contiguous()  # (kh, kw, out, in)
    bias = None if conv.bias is None else conv.bias.view(-1, 1)
    out = x.new_empty(batch, conv.out_channels, out_h, out_w)
    for n in range(batch):
        for start in range(0, out_h, SHIFTED_PRODUCT_ROWS):
            stop = min(start + SHIFTED_PRODUCT_ROWS, out_h)
            # Input rows of output rows [start, stop) in the zero-padded frame, then in x; one
            # more zero row below, which the last taps of the last row reach into.
            first, last = start - ph, stop - 1 - ph + kh
            part = F.pad(
                x[n, :, max(first, 0) : min(last, height)],
                (pw, pw, max(-first, 0), max(last - height, 0) + 1),
            )
            flat = part.reshape(part.shape[0], -1)
            size = (stop - start) * row
            total = None
            for i in range(kh):
                for j in range(kw):
                    shifted = flat[:, i * row + j : i * row + j + size]
                    if total is not None:
                        total.addmm_(taps[i, j], shifted)
                    elif bias is not None:
                        total = torch.addmm(bias, taps[i, j], shifted)
                    else:
                        total = torch.mm(taps[i, j], shifted)
            assert total is not None
            out[n, :, start:stop] = total.view(-1, stop - start, row)[..., :out_w]
    return out


def striped_conv_transpose2d(deconv: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """``deconv(x)`` computed in output row stripes, each from every input row it depends on."""
    kh, kw = deconv.kernel_size
    (sh, sw), (ph, pw), (oph, opw) = deconv.stride, deconv.padding, deconv.output_padding
    plain = deconv.groups != 1 or deconv.dilation != (1, 1) or not library_unfolds(x)
    height, width = x.shape[-2:]
    out_h = (height - 1) * sh - 2 * ph + kh + oph
    row_bytes = deconv.out_channels * kh * kw * width * x.element_size() * x.shape[0]
    rows_in = _rows_per_call(row_bytes)
    if plain or rows_in >= height:
        return nn.ConvTranspose2d.forward(deconv, x)
    rows = max(1, rows_in * sh)
    out = None
    for start in range(0, out_h, rows):
        stop = min(start + rows, out_h)
        # Output row o (padding 0: row o + ph) gets input row i through tap o + ph - i * sh.
        low = max(0, -(-(start + ph - kh + 1) // sh))
        high = min(height - 1, (stop - 1 + ph) // sh)
        part = F.conv_transpose2d(
            x[..., low : high + 1, :], deconv.weight, deconv.bias, (sh, sw), (0, pw), (0, opw)
        )
        begin = start + ph - low * sh
        missing = begin + (stop - start) - part.shape[-2]
        if missing > 0:  # rows past the last input's reach hold the bias only
            fill = part.new_zeros(*part.shape[:2], missing, part.shape[-1])
            if deconv.bias is not None:
                fill += deconv.bias.view(1, -1, 1, 1)
            part = torch.cat([part, fill], dim=2)
        if out is None:
            out = x.new_empty(x.shape[0], part.shape[1], out_h, part.shape[-1])
        out[..., start:stop, :] = part[..., begin : begin + stop - start, :]
    assert out is not None
    return out


def run_in_stripes(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    halo: int,
    max_pixels: int | None = None,
    align: int = STRIPE_ALIGN,
) -> Tensor:
    """``forward(x)`` for a fully convolutional ``forward`` with a receptive field below ``halo``
    rows, computed on row stripes of ``x`` (heights multiples of ``align``) of at most
    ``max_pixels`` (default :data:`STRIPE_PIXELS`) pixels each."""
    max_pixels = STRIPE_PIXELS if max_pixels is None else max_pixels
    height, width = x.shape[-2:]
    rows = max(align, max_pixels // max(width, 1) // align * align)
    if rows >= height or height % align or halo % align:
        return forward(x)
    out = None
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        first, last = max(0, start - halo), min(height, stop + halo)
        part = forward(x[..., first:last, :])
        if out is None:
            out = x.new_empty(x.shape[0], part.shape[1], height, part.shape[-1])
        out[..., start:stop, :] = part[..., start - first : stop - first, :]
    assert out is not None
    return out


# ---------------------------------------------------------------------------------------------
# Switching a network to stripes: every layer that can compute in stripes declares ``striped``
# (the convolutions of nn/layers.py, the U-Net, the quality enhancement), every convolution that
# can keep PyTorch's own float64 kernel declares ``library_convolutions``.

STRIPED = "striped"


def compute_in_stripes(network: nn.Module, enabled: bool = True) -> nn.Module:
    """Make every layer of ``network`` that can compute in stripes do so (or not); returns it."""
    for module in network.modules():
        if hasattr(type(module), STRIPED):
            setattr(module, STRIPED, enabled)
    return network


def use_library_convolutions(network: nn.Module, enabled: bool = True) -> nn.Module:
    """PyTorch's float64 kernel (``enabled``) or the shifted products in every striped
    convolution of ``network``; returns it."""
    for module in network.modules():
        if hasattr(type(module), LIBRARY_CONVOLUTIONS):
            setattr(module, LIBRARY_CONVOLUTIONS, enabled)
    return network
