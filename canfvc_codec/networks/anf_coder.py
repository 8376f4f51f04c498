"""The (conditional) ANF coder shared by the intra, motion and inter-frame coders.

Encoding (CANF-VC Eq. 7-10), with the augmented noise e_z fixed at zero:

    y0 = x, z = 0;  for each step: z += g_a(cat[y, cond]); y -= g_s(z)      -> (y2, z2)
    h = h_a(z2);  ĥ = Q(h)  (factorised prior)
    (μ, σ) = h_s(ĥ)  [fused by 1x1 convs with the temporal prior T(prior_input), if any]
    ẑ2 = Q(z2 · g - μ·g) / g  (per-channel λ gains g, see :mod:`canfvc_codec.nn.gain`)

Decoding starts from ``y2 := start`` (the condition; zeros without one) and runs the steps
backwards. The same :meth:`AnfCoder._reconstruct` turns coded integers into the output for the
encoder (its reference) and for the decoder, so the two stay in lock-step.

A coder with one step and no condition is a plain mean-scale hyperprior autoencoder: x̂ = g_s(ẑ).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from canfvc_codec.entropy import FactorizedPrior, GaussianConditional
from canfvc_codec.networks.config import CoderConfig
from canfvc_codec.nn.anf import (
    AdditiveStep,
    HyperAnalysis,
    HyperSynthesis,
    PriorFusion,
    analysis_transform,
)
from canfvc_codec.nn.gain import ANCHOR_LAMBDAS, LambdaGain

LATENT_DOWN = 16  # latents at 1/16 of the frame
HYPER_DOWN = 64  # hyper-latents at 1/64: frame sides must divide by this
STREAMS = 2  # hyper-latent stream, then latent stream


def likelihood_bits(likelihoods: Iterable[Tensor]) -> Tensor:
    """Bits per sample, shape (N,), of values coded with these per-element probabilities."""
    return sum((-torch.log2(lik)).flatten(1).sum(dim=1) for lik in likelihoods)  # type: ignore[return-value]


@dataclass
class CoderOutput:
    """What one coder's ``forward`` gives the trainer.

    ``likelihoods`` holds the per-element probabilities of the coded values ("hyper", "latent");
    their -log2 sum is the rate. ``condition_mse`` is the mean of (y2 - start)² per sample, the
    ‖y2 − x_c‖² term of Eq. 12 (start = the condition, or zero for unconditional coders).
    """

    x_hat: Tensor
    likelihoods: dict[str, Tensor]
    y2: Tensor
    condition_mse: Tensor

    def bits(self) -> Tensor:
        """Estimated bits per sample, shape (N,)."""
        return likelihood_bits(self.likelihoods.values())


@dataclass
class Latents:
    """The two values a coder sends, before rounding: the gained latent ``z2 · g`` and the
    hyper-latent ``h``. The analysis transforms give them (:meth:`AnfCoder.latents`); the encoder
    may refine them (:mod:`canfvc_codec.encoder.refine`) since the decoder only sees what is
    coded."""

    latent: Tensor
    hyper: Tensor


class AnfCoder(nn.Module):
    """An ANF coder of ``channels``-channel signals, optionally conditioned (see module docstring).

    ``cond_channels`` > 0 makes it conditional: the condition enters every analysis transform and
    is where decoding starts. ``prior_channels`` > 0 adds a temporal prior on ``prior_input``.
    ``enhance`` is applied to the decoded signal (the DQ net of frame coders).
    """

    def __init__(
        self,
        channels: int,
        config: CoderConfig,
        steps: int,
        cond_channels: int = 0,
        prior_channels: int = 0,
        enhance: nn.Module | None = None,
        anchors: tuple[float, ...] = ANCHOR_LAMBDAS,
    ) -> None:
        super().__init__()
        n, m, c, k = config.filters, config.latent, config.hyper, config.kernel_size
        self.channels = channels
        self.cond_channels = cond_channels
        self.latent_channels = m
        self.hyper_channels = c
        difference = config.difference and cond_channels > 0
        self.steps = nn.ModuleList(
            # Block motion rides in the last step: its latent is the one coded.
            AdditiveStep(channels, cond_channels, n, m, k, config.transform, difference, motion)
            for motion in (config.block_motion and i == steps - 1 for i in range(steps))
        )
        self.hyper_analysis = HyperAnalysis(m, n, c, config.hyper_kernel_size)
        self.hyper_synthesis = HyperSynthesis(c, n, 2 * m, config.hyper_kernel_size)
        if prior_channels:
            self.temporal_prior: nn.Module | None = analysis_transform(
                config.transform, prior_channels, n, m, k
            )
            self.fusion: nn.Module | None = PriorFusion(3 * m, m)
        else:
            self.temporal_prior = self.fusion = None
        self.hyper_prior = FactorizedPrior(c)
        self.latent_prior = GaussianConditional()
        self.gain = LambdaGain(m, anchors)
        self.enhance = enhance

    # -- shared pieces ------------------------------------------------------------------------

    def _check_inputs(self, cond: Tensor | None, prior_input: Tensor | None) -> None:
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError("condition given to an unconditional coder, or missing")
        if (prior_input is None) != (self.temporal_prior is None):
            raise ValueError("temporal-prior input given to a coder without one, or missing")

    def analyse(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Run the additive steps forwards: x -> (y2, z2)."""
        y, z = x, None
        for step in self.steps:
            y, z = step.encode(y, z, cond)
        assert z is not None
        return y, z

    def _start(self, cond: Tensor | None, like: Tensor, size: tuple[int, int]) -> Tensor:
        if cond is not None:
            return cond
        return like.new_zeros(like.shape[0], self.channels, *size)

    def _synthesise(self, z_hat: Tensor, start: Tensor, cond: Tensor | None) -> Tensor:
        """Run the steps backwards from ``y2 := start``. The first step's latent update is
        skipped: it would only recover the (zero) augmented noise."""
        x, z = start, z_hat
        for i in reversed(range(len(self.steps))):
            step = self.steps[i]
            if i == 0:
                x = x + step.synthesise(z)
            else:
                x, z = step.decode(x, z, cond)
        return x if self.enhance is None else self.enhance(x)

    def _entropy_parameters(
        self, h_hat: Tensor, prior_input: Tensor | None, gain: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(means, scales) of the gained latent from the hyperprior (and temporal prior)."""
        params = self.hyper_synthesis(h_hat)
        if self.temporal_prior is not None and self.fusion is not None:
            params = self.fusion(torch.cat([params, self.temporal_prior(prior_input)], dim=1))
        means, scales = params.chunk(2, dim=1)
        return means * gain, scales * gain

    def _param(self) -> Tensor:
        return self.hyper_prior.quantiles

    def aux_loss(self) -> Tensor:
        """The factorised prior's quantile loss (optimised separately, as in CompressAI)."""
        return self.hyper_prior.aux_loss()

    def update(self) -> None:
        """Rebuild the hyper-latent integer tables from the learned density."""
        self.hyper_prior.update()

    # -- training -----------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        lmbda: float | Tensor,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
    ) -> CoderOutput:
        """Noise quantisation in training mode, rounding in eval mode."""
        self._check_inputs(cond, prior_input)
        y2, z2 = self.analyse(x, cond)
        gain, inv_gain = self.gain.gains(lmbda, x.shape[0], x)
        h_hat, h_likelihoods = self.hyper_prior(self.hyper_analysis(z2))
        means, scales = self._entropy_parameters(h_hat, prior_input, gain)
        y_hat, y_likelihoods = self.latent_prior(z2 * gain, scales, means)
        start = self._start(cond, x, x.shape[-2:])
        x_hat = self._synthesise(y_hat * inv_gain, start, cond)
        condition_mse = (y2 - start).pow(2).flatten(1).mean(dim=1)
        return CoderOutput(
            x_hat, {"hyper": h_likelihoods, "latent": y_likelihoods}, y2, condition_mse
        )

    # -- coding -------------------------------------------------------------------------------

    def latents(self, x: Tensor, lmbda: float | Tensor, cond: Tensor | None = None) -> Latents:
        """What :meth:`compress` codes for ``x`` unless told otherwise: the analysis's values."""
        _, z2 = self.analyse(x, cond)
        gain, _ = self.gain.gains(lmbda, x.shape[0], x)
        return Latents(z2 * gain, self.hyper_analysis(z2))

    def relaxed_decode(
        self,
        latents: Latents,
        lmbda: float | Tensor,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(estimated bits per sample (N,), reconstruction) of coding ``latents``.

        The values are rounded as :meth:`compress` rounds them, so both results are what coding
        would give (up to the range coder's table precision), and the rounding passes gradients
        straight through: the objective of encoder-side refinement.
        """
        self._check_inputs(cond, prior_input)
        batch, _, height, width = latents.latent.shape
        gain, inv_gain = self.gain.gains(lmbda, batch, latents.latent)
        h_hat = self.hyper_prior.quantize(latents.hyper, straight_through=True)
        means, scales = self._entropy_parameters(h_hat, prior_input, gain)
        y_hat = self.latent_prior.quantize(latents.latent, means, straight_through=True)
        bits = likelihood_bits(
            [
                self.hyper_prior.likelihood(h_hat),
                self.latent_prior.likelihood(y_hat, scales, means),
            ]
        )
        size = (height * LATENT_DOWN, width * LATENT_DOWN)
        x_hat = self._synthesise(y_hat * inv_gain, self._start(cond, latents.latent, size), cond)
        return bits, x_hat

    def unquantised(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The reconstruction of ``x`` from its latent as the analysis gives it, neither gained
        nor rounded: what the transforms reach at any rate. At a high λ the coded
        reconstruction approaches it and cannot pass it (the augmented part the decoder starts
        from, zero or the condition, is never sent)."""
        _, z2 = self.analyse(x, cond)
        return self._synthesise(z2, self._start(cond, x, x.shape[-2:]), cond)

    def _decode_hyper(self, data: bytes, like: Tensor, size: tuple[int, int]) -> Tensor:
        shape = (like.shape[0], self.hyper_channels, size[0] // HYPER_DOWN, size[1] // HYPER_DOWN)
        return self.hyper_prior.decompress(data, shape).to(like.device, like.dtype)

    def _reconstruct(
        self,
        data: bytes,
        means: Tensor,
        scales: Tensor,
        inv_gain: Tensor,
        start: Tensor,
        cond: Tensor | None,
    ) -> Tensor:
        """Entropy-decode the latent stream and run the decoder path: the one place that turns
        coded integers into a reconstruction, for encoder and decoder alike."""
        symbols = self.latent_prior.decompress(data, scales).to(means.device, means.dtype)
        return self._synthesise((symbols + means) * inv_gain, start, cond)

    @staticmethod
    def _check_size(size: tuple[int, int]) -> None:
        if size[0] % HYPER_DOWN or size[1] % HYPER_DOWN:
            raise ValueError(f"frame size {size} must be a multiple of {HYPER_DOWN} (pad first)")

    @torch.no_grad()
    def compress(
        self,
        x: Tensor,
        lmbda: float | Tensor,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
        latents: Latents | None = None,
    ) -> tuple[list[bytes], Tensor]:
        """(streams, reconstruction); the reconstruction is decoded from the streams.

        ``latents``: the values to code, when the encoder chose other than :meth:`latents`.
        """
        self._check_inputs(cond, prior_input)
        size = (x.shape[-2], x.shape[-1])
        self._check_size(size)
        if latents is None:
            latents = self.latents(x, lmbda, cond)
        gain, inv_gain = self.gain.gains(lmbda, x.shape[0], x)
        hyper_data = self.hyper_prior.compress(latents.hyper.to(x.dtype))
        h_hat = self._decode_hyper(hyper_data, x, size)
        means, scales = self._entropy_parameters(h_hat, prior_input, gain)
        latent_data = self.latent_prior.compress(latents.latent.to(x.dtype), scales, means)
        start = self._start(cond, x, size)
        x_hat = self._reconstruct(latent_data, means, scales, inv_gain, start, cond)
        return [hyper_data, latent_data], x_hat

    @torch.no_grad()
    def decompress(
        self,
        streams: list[bytes],
        size: tuple[int, int],
        lmbda: float | Tensor,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
        batch: int = 1,
    ) -> Tensor:
        """The reconstruction (batch, channels, *size) from :meth:`compress`'s streams."""
        self._check_inputs(cond, prior_input)
        self._check_size(size)
        if len(streams) != STREAMS:
            raise ValueError(f"expected {STREAMS} streams, got {len(streams)}")
        like = self._param().new_empty(batch, 0)
        gain, inv_gain = self.gain.gains(lmbda, batch, like)
        h_hat = self._decode_hyper(streams[0], like, size)
        means, scales = self._entropy_parameters(h_hat, prior_input, gain)
        start = self._start(cond, like, size)
        return self._reconstruct(streams[1], means, scales, inv_gain, start, cond)
