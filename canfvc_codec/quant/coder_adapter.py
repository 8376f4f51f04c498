"""Training an ANF coder with binary, differentially modulated latents instead of rounding.

This is a training-time experiment (``python -m canfvc_codec.lab.binary_intra --quantizer
dm1|dm2``): it measures what the quantisers of :mod:`canfvc_codec.quant` do to the rate and
distortion of a canfvc coder. The coder itself is not changed and codes with rounding; the
adapter only replaces, during training, the step between its analysis and its synthesis:

- the coder's final latent ``z2`` of every frame of a clip, times the coder's λ gain, is bounded
  to ``c = 0.5 · tanh(z2 · g)`` (inside the stable range of both modulation orders),
- the modulator turns ``c`` into ±1 bits along the frame axis, its state carried from frame to
  frame of the clip,
- the bits are priced by a :class:`~canfvc_codec.quant.binary_entropy.BinaryEntropyModel` (the
  hyperprior is not used for this latent, and its rate is not counted),
- the decoder path of the coder runs on ``b / g``, as the rounding path divides the gain out.

The adapter holds the quantiser and the binary entropy model only; the coder is passed to
:meth:`BinaryLatentAdapter.forward`, so its parameters stay where they are (in the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from canfvc_codec.errors import UsageError
from canfvc_codec.networks.anf_coder import AnfCoder, CoderOutput
from canfvc_codec.networks.video import FrameOutput

from .binary_entropy import BinaryEntropyModel
from .modulation import ModulatorState
from .quantizers import make_quantizer

# Inputs of the modulator are c = LATENT_BOUND * tanh(gained latent): |c| < 0.7 keeps the
# 2nd-order loop stable (and the 1st-order one, which needs |c| < 1).
LATENT_BOUND = 0.5
# Frames of a training clip for a binary latent: the modulation and the entropy model's context
# (two previous frames) need a few frames to act on.
CLIP_FRAMES = 4
FRAME_DIM = 1
# The quantisers an adapter can train with (rounding is the coder's own path).
ADAPTER_KINDS = ("dm1", "dm2")


@dataclass
class BinaryCoding:
    """One clip through the adapter: per-frame outputs (``FrameOutput.loss`` works on each), the
    ±1 bits (N, T, C, h, w) and the modulator state after the last frame."""

    frames: list[FrameOutput]
    bits: Tensor
    state: ModulatorState | None


class BinaryLatentAdapter(nn.Module):
    """A binary latent quantiser (``dm1`` or ``dm2``) and its entropy model for an ANF coder."""

    def __init__(self, kind: str, latent_channels: int, context: int = 2) -> None:
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise UsageError(
                f"quantizer {kind!r} has no coder adapter; choose one of {', '.join(ADAPTER_KINDS)}"
            )
        self.kind = kind
        self.quantizer = make_quantizer(kind)
        self.entropy = BinaryEntropyModel(latent_channels, context)

    def forward(
        self,
        coder: AnfCoder,
        frames: Tensor,
        lmbda: float | Tensor,
        state: ModulatorState | None = None,
    ) -> BinaryCoding:
        """Code the clip ``frames`` (N, T, channels, H, W) with ``coder`` (unconditional, no
        temporal prior: the intra coder) and binary latents; ``state`` continues a previous clip."""
        if frames.dim() != 5:
            raise ValueError(f"expected frames (N, T, C, H, W), got {tuple(frames.shape)}")
        samples, count = frames.shape[0], frames.shape[FRAME_DIM]
        x = frames.flatten(0, 1)  # every frame through the coder at once, sample-major
        y2, z2 = coder.analyse(x, None)
        gain, inv_gain = coder.gain.gains(lmbda, samples, x)
        gain = gain.repeat_interleave(count, dim=0)
        inv_gain = inv_gain.repeat_interleave(count, dim=0)
        # The modulation loop and the likelihoods stay in float32 under autocast: the loop
        # accumulates residuals, and the rate is what the loss must get right.
        with torch.autocast(device_type=x.device.type, enabled=False):
            c = LATENT_BOUND * torch.tanh(z2.float() * gain.float())
            latents = c.unflatten(0, (samples, count))
            bits, state = self.quantizer(latents, state)
            likelihoods = self.entropy(bits)
        z_hat = bits.flatten(0, 1) * inv_gain
        start = coder._start(None, x, (x.shape[-2], x.shape[-1]))
        x_hat = coder._synthesise(z_hat.to(z2.dtype), start, None)
        condition_mse = (y2 - start).pow(2).flatten(1).mean(dim=1)

        def per_frame(t: Tensor) -> tuple[Tensor, ...]:
            return t.unflatten(0, (samples, count)).unbind(FRAME_DIM)

        outputs = []
        for x_hat_t, y2_t, mse_t, lik_t in zip(
            per_frame(x_hat),
            per_frame(y2),
            per_frame(condition_mse),
            likelihoods.unbind(FRAME_DIM),
            strict=True,
        ):
            coded = CoderOutput(x_hat_t, {"latent": lik_t}, y2_t, mse_t)
            outputs.append(
                FrameOutput(x_hat_t, {"intra.latent": lik_t}, mse_t, coders={"intra": coded})
            )
        return BinaryCoding(outputs, bits, state)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"
