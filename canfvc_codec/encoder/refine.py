"""Encoder-side latent refinement: the encoder optimises the values it sends.

The analysis transforms give latents that are good on average over the training data (amortised
inference). For one picture, gradient descent on the latents themselves finds values with a lower
rate + λ·distortion under the same decoder (Campos et al., "Content adaptive optimization for
neural image compression", CVPR-W 2019; Yang et al., "Improving inference for neural image
compression", NeurIPS 2020). Only the encoder changes: the decoder decodes whatever integers it
receives, so a refined stream decodes with any canfvc decoder, and refinement is an encoder
setting like x265's presets (``canfvc encode --refine N``).

Each coder's objective is the codec's: estimated bits per pixel plus λ times the MSE of the picture
its output becomes — the frame itself for the intra and inter coders, the motion-compensated frame
x_c for the motion coders (a flow matters only through the prediction it makes). Rounding is
relaxed with straight-through gradients (:meth:`AnfCoder.relaxed_decode`); each step is scored with
true rounding and the best latents seen are kept, the analysis's included, so refinement never
raises the estimated cost of a frame.

The refiner works on a float32 copy of the networks: the float64 ones still code and reconstruct
(``numerics.DECODER_DTYPE``), and refinement only chooses what they code. With 0 steps it gives the
analysis transforms' latents, computed on that copy: the encoder's analysis needs no float64, since
the decoder sees only the integers, and runs several times faster in float32 on a CPU (oneDNN). The
copy computes large frames in stripes as the decoder does
(:meth:`~canfvc_codec.networks.video.VideoModel.compute_in_stripes`); refinement's gradients still
hold memory that grows with the picture, as training's do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from canfvc_codec.encoder.presets import check_refine_steps
from canfvc_codec.networks.anf_coder import AnfCoder, Latents
from canfvc_codec.networks.video import MotionCoding, VideoModel
from canfvc_codec.numerics import Numerics

DEFAULT_REFINE_STEPS = 0
# Adam's first step size, in quantisation bins of the gained latents, falling linearly to zero
# over the steps. Larger steps move many values across rounding boundaries at once, which the
# straight-through gradient does not foresee; at a constant step size the cost of an intra frame
# of bikes fell for 3 (λ 256) to 9 (λ 2048) steps and then rose again, while the falling one kept
# what it had gained (docs/encoder.md).
REFINE_STEP_SIZE = 0.02
REFINE_DTYPE = torch.float32
# How the encoder's own copy computes: in float32, computing large frames in stripes as the
# decoder does, on PyTorch's default path (it never reaches the decoder, so any path will do).
ENCODER_NUMERICS = Numerics(REFINE_DTYPE)


# The coder of I-frames; every other coder (motion and inter) codes P-frames.
INTRA_CODER = "intra"
INTER_CODER = "inter"


def refine_latents(
    coder: AnfCoder,
    x: Tensor,
    lmbda: float,
    steps: int,
    *,
    cond: Tensor | None = None,
    prior_input: Tensor | None = None,
    picture: Callable[[Tensor], Tensor] | None = None,
    target: Tensor | None = None,
) -> tuple[Latents, list[float]]:
    """(the best latents found for coding ``x``, the cost of each step).

    The cost is bits per pixel of ``target`` plus λ·MSE(picture(x̂), target); ``picture`` defaults
    to x̂ itself and ``target`` to ``x``. Step 0 is the analysis transforms' latents.
    """
    target = x if target is None else target
    pixels = target.shape[-2] * target.shape[-1]
    with torch.no_grad():
        start = coder.latents(x, lmbda, cond)
    latent = start.latent.detach().clone().requires_grad_(True)
    hyper = start.hyper.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent, hyper], lr=REFINE_STEP_SIZE)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / max(steps, 1))
    best, best_cost, costs = start, math.inf, []
    with torch.enable_grad():
        for step in range(steps + 1):
            bits, x_hat = coder.relaxed_decode(Latents(latent, hyper), lmbda, cond, prior_input)
            shown = x_hat if picture is None else picture(x_hat)
            cost = bits.sum() / pixels + lmbda * F.mse_loss(shown, target)
            costs.append(float(cost.detach()))
            if costs[-1] < best_cost:
                best_cost = costs[-1]
                best = Latents(latent.detach().clone(), hyper.detach().clone())
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            cost.backward()
            optimizer.step()
            schedule.step()
    return best, costs


class LatentRefiner:
    """Chooses the latents that the encoder passes to a :class:`VideoModel`'s ``compress_*``
    methods (for P-frames as their :class:`~canfvc_codec.networks.video.PFrameChoices`), on a
    float32 copy of its networks, :attr:`model`: the analysis transforms' latents, refined by
    ``steps`` gradient steps in I-frames and ``inter_steps`` (default: ``steps``) in P-frames'
    motion and inter coders.

    I-frames gain the most per step: they are the largest frames and the reference of the
    P-frames that follow, and one intra coder costs less to refine than a P-frame's three
    (docs/encoder.md)."""

    def __init__(
        self,
        model: VideoModel,
        steps: int,
        device: torch.device | None = None,
        *,
        inter_steps: int | None = None,
    ) -> None:
        check_refine_steps(steps)
        inter_steps = steps if inter_steps is None else inter_steps
        check_refine_steps(inter_steps, "--refine-inter")
        self.steps = {
            name: steps if name == INTRA_CODER else inter_steps for name in model.coders()
        }
        self.model = VideoModel(model.config)
        self.model.load_state_dict(model.state_dict())
        device = device or next(model.parameters()).device
        ENCODER_NUMERICS.prepare(self.model, device)
        self.model.requires_grad_(False)

    @staticmethod
    def _cast(value: Tensor | None) -> Tensor | None:
        return None if value is None else value.to(REFINE_DTYPE)

    def _refine(
        self,
        name: str,
        x: Tensor,
        lmbda: float,
        cond: Tensor | None,
        prior_input: Tensor | None,
        picture: Callable[[Tensor], Tensor] | None = None,
        target: Tensor | None = None,
    ) -> Latents:
        coder: AnfCoder = self.model.coders()[name]  # type: ignore[assignment]
        steps = self.steps[name]
        if not steps:
            with torch.no_grad():
                return coder.latents(x.to(REFINE_DTYPE), lmbda, self._cast(cond))
        latents, _ = refine_latents(
            coder,
            x.to(REFINE_DTYPE),
            lmbda,
            steps,
            cond=self._cast(cond),
            prior_input=self._cast(prior_input),
            picture=picture,
            target=self._cast(target),
        )
        return latents

    def frame(
        self,
        name: str,
        x: Tensor,
        lmbda: float,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
    ) -> Latents:
        """Latents of the intra or inter coder ``name`` for the frame ``x``."""
        return self._refine(name, x, lmbda, cond, prior_input)

    def estimate_flow(self, x: Tensor, reference: Tensor) -> Tensor:
        """SPyNet's flow on the float32 copy, in the type of ``x``: the encoder's motion search
        when it is the model's own network (only the encoder estimates motion)."""
        flow = self.model.spynet(x.to(REFINE_DTYPE), reference.to(REFINE_DTYPE))
        return flow.to(x.dtype)

    def motion(
        self,
        name: str,
        flow: Tensor,
        lmbda: float,
        reference: Tensor,
        frame: Tensor,
        cond: Tensor | None = None,
        prior_input: Tensor | None = None,
    ) -> Latents:
        """Latents of the motion coder ``name`` for ``flow``, scored by how well the motion
        compensation of ``reference`` with the decoded flow predicts ``frame``."""
        reference = reference.to(REFINE_DTYPE)
        return self._refine(
            name,
            flow,
            lmbda,
            cond,
            prior_input,
            picture=lambda flow_hat: self.model.mc(reference, flow_hat),
            target=frame,
        )

    # -- the encoder's choices of a P-frame (networks.video.PFrameChoices) ---------------------

    def motion_latents(
        self, motion: MotionCoding, flow: Tensor, lmbda: float, reference: Tensor, x: Tensor
    ) -> Latents:
        """Latents of the motion coder of ``motion`` for ``flow``, as :meth:`motion` chooses."""
        return self.motion(
            motion.name, flow, lmbda, reference, x, motion.condition, motion.prior_input
        )

    def inter_latents(self, x: Tensor, x_c: Tensor, lmbda: float) -> Latents:
        """Latents of the inter coder for ``x`` given its prediction ``x_c`` (its condition and
        temporal-prior input alike)."""
        return self.frame(INTER_CODER, x, lmbda, x_c, x_c)
