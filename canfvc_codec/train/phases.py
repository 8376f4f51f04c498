"""The training phases (supplement §7, Table A5) scaled to the compute at hand, and their steps.

The paper trains in three major phases: pre-training of motion estimation and extrapolation
(distortion only), 2-frame (IP) training of the P-frame coder from uncompressed references, and
5-frame (IPPPP) training on decoded references, ending with all networks fine-tuned together.
We keep that order and give each phase a *share* of a training plan (in steps or in seconds), so
the same schedule fits a ten-minute run and a day-long one. The ANFIC intra coder, which the paper
takes pre-trained, gets its own rate-distortion phase on frames and stills.

Each phase names the parts of :class:`~canfvc_codec.networks.VideoModel` it trains (the others are
frozen) and a ``kind`` that says how one training step computes its loss; :func:`run_step` does
the forward and backward passes of one step and returns the figures the trainer logs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canfvc_codec.encoder.motion import FlowEstimator
from canfvc_codec.entropy import FactorizedPrior
from canfvc_codec.entropy.coder import TabledModel
from canfvc_codec.errors import UsageError
from canfvc_codec.networks import AnfCoder, FrameOutput, References, VideoModel, to_reference
from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.rates import Rates
from canfvc_codec.train import losses

ALL_PARTS = ("intra", "motion_first", "motion", "inter", "spynet", "extrapolation", "mc")
P_CODER_PARTS = ("motion_first", "motion", "mc", "inter")
# In 2-frame training a batch exercises the first-P (hyperprior) motion coder with this
# probability, the conditional motion coder otherwise: in a GOP of 32 most P-frames are conditional.
FIRST_P_PROBABILITY = 0.3
# A first-P sample needs the target and one reference; a conditional one three references.
IP_FRAMES = 4
FLOW_CHANNELS = 2
# Frames of a long-chain training sequence (``--phase chain``): half a GOP of 32, past the point
# where today's P-frames have settled (frames 8-15 of a GOP sit at the steady state).
CHAIN_FRAMES = 16
QUANTILES = "quantiles"  # the factorised priors' tails and medians (auxiliary loss)
# What prices a coder's latents: the hyper-transforms and the temporal prior give the latents'
# means and scales. With noise in place of rounding no reconstruction depends on them, but in
# coding the latents are rounded around those means, so reconstructions move with them; the
# phases that fit them alone therefore train on rounded reconstructions (``Phase.rounded``).
ENTROPY_PARTS = ("hyper_analysis", "hyper_synthesis", "temporal_prior", "fusion")
ENTROPY = "entropy"  # in a phase's parts: the ENTROPY_PARTS of every coder
MOTION_CODERS = ("motion_first", "motion")


def entropy_of(coder: str) -> str:
    """In a phase's parts: the ENTROPY_PARTS of ``coder`` alone. A phase that names any coder
    this way fits those coders' factorised priors and freezes every other one."""
    return f"{coder}.{ENTROPY}"


@dataclass(frozen=True)
class Phase:
    """One row of the schedule: what trains, on what, how fast, and for what share of the plan."""

    name: str
    kind: str  # flow | extrapolation | intra | motion | ip | sequence
    parts: tuple[str, ...]  # VideoModel children that receive gradients
    frames: int  # frames per training sequence
    lr: float
    share: float  # fraction of the plan
    description: str
    # Latents rounded as coding rounds them in every reconstruction (rates still priced with
    # noise): phases that fit entropy models need it, since the means they predict move what the
    # decoder reconstructs, and noise hides that.
    rounded: bool = False
    # The sequence's I-frame coded at a λ drawn between the lowest trained λ and the encoder's
    # intra λ (:func:`degraded_intra_lambda`), so that the P-frames learn to restore a reference
    # poorer than their own λ asks for, as after a drift or a scene cut, not only to keep it.
    degraded_start: bool = False


# Learning rates: the paper's 1e-4 for the coders (a little higher at first, since our runs are
# short), more for the distortion-only flow pre-training, which starts from random weights.
# fmt: off
SCHEDULE: tuple[Phase, ...] = (
    Phase("flow", "flow", ("spynet",), frames=2, lr=1e-3, share=0.06,
          description="SPyNet: exact flows of stills in motion, multi-scale warping loss, "
          "and OpenCV DIS flow as a teacher when cv2 is present"),
    Phase("extrapolation", "extrapolation", ("extrapolation",), frames=IP_FRAMES, lr=5e-4,
          share=0.04, description="flow-extrapolation U-Net on SPyNet flows of uncompressed "
          "frames"),
    Phase("intra", "intra", ("intra",), frames=1, lr=2e-4, share=0.24,
          description="ANFIC intra coder, rate-distortion on frames and stills"),
    Phase("ip_motion", "motion", ("motion_first", "motion", "mc"), frames=IP_FRAMES, lr=2e-4,
          share=0.08, description="2-frame: motion coders and motion compensation, "
          "D(x_c, x_t) + motion rate"),
    Phase("ip_inter", "ip", ("inter",), frames=IP_FRAMES, lr=2e-4, share=0.10,
          description="2-frame: inter-frame coder with motion coders and MC frozen"),
    Phase("ip_joint", "ip", P_CODER_PARTS, frames=IP_FRAMES, lr=1e-4, share=0.10,
          description="2-frame: motion coders, MC and inter-frame coder jointly"),
    Phase("ipppp", "sequence", P_CODER_PARTS, frames=5, lr=1e-4, share=0.22,
          description="5-frame IPPPP on decoded references, gradient stopped at each reference"),
    Phase("finetune", "sequence", ALL_PARTS, frames=7, lr=5e-5, share=0.16,
          description="all networks, 7-frame sequences on decoded references, lower rate"),
)
# Outside the schedule (``--phase priors``): refit the factorised priors of a trained model to
# its hyper-latents, every network frozen; cheap, since no gradient reaches the networks. Its
# high rate (the densities get ten times it) moves a density that starts ten times too wide in
# tens of steps, not thousands.
PRIORS = Phase("priors", "priors", (), frames=5, lr=1e-3, share=0.0,
               description="factorised priors only, fitted to the hyper-latents of IPPPP "
               "sequences with every network frozen")
# Outside the schedule (``--phase entropy``): every coder's entropy model (hyper-transforms,
# temporal prior, factorised prior) refitted to the latents its frozen transforms produce on IPPPP
# sequences, reconstructing from rounded latents so that the loss sees what the means do to them.
ENTROPY_PHASE = Phase("entropy", "priors", (ENTROPY,), frames=5, lr=1e-4, share=0.0,
                      description="entropy models of every coder (hyper-transforms, temporal "
                      "prior, factorised prior), fitted on IPPPP sequences with the transforms "
                      "frozen and the latents rounded as in coding", rounded=True)
# Outside the schedule (``--phase motion_entropy``): the same refit for the two motion coders
# alone. Their entropy models were fitted while they coded SPyNet flows, so they have the most to
# gain from a refit on DIS flows; the intra and inter coders' entropy models, fitted on large
# batches, stay as they are, since small noisy batches cost them more than they save.
MOTION_ENTROPY_PHASE = Phase("motion_entropy", "priors",
                             tuple(entropy_of(coder) for coder in MOTION_CODERS), frames=5,
                             lr=1e-4, share=0.0,
                             description="entropy models of the two motion coders only, fitted "
                             "on IPPPP sequences with everything else frozen and the latents "
                             "rounded as in coding", rounded=True)
# Outside the schedule (``--phase chain``): the P-frame coders on long chains of decoded
# references, as a GOP codes them, started from I-frames of any quality up to the encoder's: the
# steady state of a GOP and the way back from a poor reference are what the five frames of IPPPP
# never reach. Gradients stop at each reference, so memory stays at one frame's worth.
CHAIN = Phase("chain", "sequence", P_CODER_PARTS, frames=CHAIN_FRAMES, lr=1e-4, share=0.0,
              description=f"{CHAIN_FRAMES}-frame chains on decoded references from I-frames "
              "coded at a λ drawn up to the encoder's, gradient stopped at each reference",
              degraded_start=True)
# fmt: on
PHASES = {p.name: p for p in (*SCHEDULE, PRIORS, ENTROPY_PHASE, MOTION_ENTROPY_PHASE, CHAIN)}


def get_phase(name: str) -> Phase:
    try:
        return PHASES[name]
    except KeyError:
        raise UsageError(f"unknown phase {name!r} (known: {', '.join(PHASES)})") from None


def phase_at(progress: float) -> Phase:
    """The phase of the schedule at ``progress`` in [0, 1] of the plan; the last one after it."""
    edge = 0.0
    for phase in SCHEDULE:
        edge += phase.share
        if progress < edge:
            return phase
    return SCHEDULE[-1]


def prior_density_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The density networks of every factorised prior in ``model`` (not their quantiles, which
    the auxiliary loss trains)."""
    return [
        param
        for module in model.modules()
        if isinstance(module, FactorizedPrior)
        for name, param in module.named_parameters()
        if name != QUANTILES
    ]


def entropy_scope(parts: tuple[str, ...]) -> set[str] | None:
    """The coders named by :func:`entropy_of` in a phase's ``parts``; None when there are none."""
    suffix = "." + ENTROPY
    scope = {part.removesuffix(suffix) for part in parts if part.endswith(suffix)}
    return scope or None


def set_trainable(model: VideoModel, parts: tuple[str, ...]) -> None:
    """Freeze every part of ``model`` except ``parts``.

    The factorised priors stay trainable, except those of the coders outside a phase's
    :func:`entropy_scope`. In training a prior's density only prices the hyper-latents (their
    noisy values do not depend on it), so fitting it to whatever the frozen coders produce can only
    lower the rate; left frozen with its coder, it keeps the wide initial density and charges bits
    for hyper-latents that carry almost nothing.
    """
    scope = entropy_scope(parts)
    for name, child in model.named_children():
        child.requires_grad_(name in parts)
        fits_priors = scope is None or name in scope
        fits_entropy = ENTROPY in parts or (scope is not None and name in scope)
        for module in child.modules():
            if isinstance(module, FactorizedPrior):
                module.requires_grad_(fits_priors)
            if fits_entropy and isinstance(module, AnfCoder):
                for part_name in ENTROPY_PARTS:
                    part = getattr(module, part_name)
                    if part is not None:
                        part.requires_grad_(True)


@dataclass
class StepResult:
    """Figures of one step, averaged over its coded frames."""

    loss: float
    bpp: float
    mse: float
    lmbda: float


def step_result(figures: dict[str, Tensor], lmbda: float) -> StepResult:
    """The logged figures of a step from its loss, bpp and MSE tensors."""
    value = {k: float(v.detach()) for k, v in figures.items()}
    return StepResult(value["loss"], value["bpp"], value["mse"], lmbda)


def frame_loss(out: FrameOutput, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """Loss, bpp and MSE of one coded frame against ``x``, in float32."""
    figures = out.loss(x, lmbda)
    return {k: v.float() for k, v in figures.items()}


def estimate_flow(
    model: VideoModel, search: FlowEstimator | None, x: Tensor, reference: Tensor
) -> Tensor:
    """f_t from the motion search the motion coders are trained on (None: the model's SPyNet)."""
    return model.spynet(x, reference) if search is None else search(x, reference)


def frame_rates(model: VideoModel, lmbda: float) -> Rates:
    """The rates of a training sequence at ``lmbda``: the encoder's defaults
    (:meth:`~canfvc_codec.rates.Rates.resolve`), so that the motion coders learn the operating
    point they code at, the inter coder learns from the x_c it will receive, and the P-frames
    learn from references of the quality they will receive."""
    return Rates.resolve(lmbda, model.config.anchor_lambdas)


def degraded_intra_lambda(model: VideoModel, lmbda: float, rng: np.random.Generator) -> float:
    """An I-frame λ drawn log-uniformly between the lowest trained λ and the encoder's intra λ
    (:func:`frame_rates`): references from poor to as good as the encoder makes them."""
    low = min(model.config.anchor_lambdas)
    high = max(frame_rates(model, lmbda).intra, low)
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _p_frame(
    model: VideoModel, x: Tensor, refs: References, lmbda: float, flow: Tensor | None
) -> FrameOutput:
    """A P-frame's forward pass as the encoder codes it, at :func:`frame_rates`."""
    return model.forward_inter(x, refs, frame_rates(model, lmbda), flow)


def _estimated_refs(
    model: VideoModel, frames: Tensor, conditional: bool, search: FlowEstimator | None = None
) -> References:
    """References built from uncompressed frames (2-frame training): the last one alone for the
    first-P coder, or three frames and their estimated flows for the conditional coder."""
    if not conditional:
        return References([frames[:, -1]])
    with torch.no_grad():
        flows = [
            estimate_flow(model, search, frames[:, k], frames[:, k - 1]).float() for k in (1, 2)
        ]
    return References([frames[:, 0], frames[:, 1], frames[:, 2]], flows)


def run_step(
    model: VideoModel,
    phase: Phase,
    batch: Tensor,
    lmbda: float,
    rng: np.random.Generator,
    autocast: Callable[[], object],
    teacher: FlowEstimator | None = None,
    flow_targets: tuple[Tensor, Tensor] | None = None,
    motion_search: FlowEstimator | None = None,
) -> StepResult:
    """Forward and backward passes of one step of ``phase`` on ``batch`` (B, T, 3, H, W).

    ``flow_targets`` (flows (B, 2, H, W), known (B,) bool) are the exact flows of the flow phase
    where the data knows them (stills in synthetic motion). ``motion_search`` gives the flows
    the motion coders learn to code (None: SPyNet's).

    Gradients are accumulated into the parameters; the caller steps the optimiser. Multi-frame
    kinds call ``backward`` once per frame (their graphs are independent since references are
    detached), which keeps memory at one frame's worth.
    """
    kind = phase.kind
    if kind == "flow":
        return _flow_step(model, batch, flow_targets, autocast, teacher, lmbda)

    if kind == "extrapolation":
        with torch.no_grad(), autocast():
            flows = [
                estimate_flow(model, motion_search, batch[:, k], batch[:, k - 1]).float()
                for k in (1, 2, 3)
            ]
        with autocast():
            f_c = model.extrapolation([batch[:, 0], batch[:, 1], batch[:, 2]], flows[:2]).float()
        loss = losses.endpoint_error(f_c, flows[2])
        loss.backward()
        warped = backward_warp(batch[:, 2], f_c.detach())
        return StepResult(float(loss.detach()), 0.0, float(losses.mse(warped, batch[:, 3])), lmbda)

    if kind == "intra":
        x = batch[:, 0]
        with autocast():
            out = model(x, lmbda)
        figures = frame_loss(out, x, lmbda)
        figures["loss"].backward()
        return step_result(figures, lmbda)

    if kind in ("motion", "ip"):
        conditional = rng.random() >= FIRST_P_PROBABILITY
        refs = _estimated_refs(model, batch[:, : IP_FRAMES - 1], conditional, motion_search)
        x = batch[:, IP_FRAMES - 1]
        with torch.no_grad(), autocast():
            flow = None if motion_search is None else motion_search(x, refs.frames[-1])
        with autocast():
            if kind == "motion":
                coded_at = frame_rates(model, lmbda).motion
                motion, _, x_c = model.forward_motion(x, refs, coded_at, flow)
                bpp = motion.bits() / (x.shape[-2] * x.shape[-1])
                distortion = losses.mse(x_c, x)
                rate = bpp.float().mean()
                loss = losses.rd_loss(rate, distortion, coded_at)
                figures = {"loss": loss, "bpp": rate, "mse": distortion}
            else:
                figures = frame_loss(_p_frame(model, x, refs, lmbda, flow), x, lmbda)
        figures["loss"].backward()
        return step_result(figures, lmbda)

    if kind in ("sequence", "priors"):
        with rounded_reconstructions(model, phase.rounded):
            return _sequence_step(model, phase, batch, lmbda, autocast, rng, motion_search)
    raise ValueError(f"unknown phase kind {kind!r}")


@contextlib.contextmanager
def rounded_reconstructions(model: VideoModel, rounded: bool) -> Iterator[None]:
    """Every entropy model of ``model`` hands on rounded latents while the block runs."""
    entropy_models = [m for m in model.modules() if isinstance(m, TabledModel)]
    for entropy_model in entropy_models:
        entropy_model.rounded_in_training = rounded
    try:
        yield
    finally:
        for entropy_model in entropy_models:
            entropy_model.rounded_in_training = False


@contextlib.contextmanager
def _level_flows(spynet: nn.Module) -> Iterator[list[Tensor]]:
    """Collect the flow after every SPyNet level, coarsest first, while the block runs.

    Each level gets ``cat[first, warped second, flow so far]`` and returns a correction, so the
    flow after it is the input's last two channels plus the output; hooks read that without
    re-implementing the network's pyramid.
    """
    flows: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        flows.append(inputs[0][:, -FLOW_CHANNELS:].float() + output.float())

    handles = [level.register_forward_hook(keep) for level in spynet.levels]
    try:
        yield flows
    finally:
        for handle in handles:
            handle.remove()


def _pyramid_endpoint_error(level_flows: list[Tensor], target: Tensor) -> Tensor:
    """Mean end-point error of every level's flow against the target at that level's scale (in
    that level's pixels): each level learns to correct small residual motions, which is what
    makes a flow network trainable from scratch in few steps."""
    total = target.new_zeros(())
    for flow in level_flows:
        factor = target.shape[-1] // flow.shape[-1]
        scaled = F.avg_pool2d(target, factor) / factor if factor > 1 else target
        total = total + losses.endpoint_error(flow, scaled)
    return total / len(level_flows)


def _flow_step(
    model: VideoModel,
    batch: Tensor,
    flow_targets: tuple[Tensor, Tensor] | None,
    autocast: Callable[[], object],
    teacher: FlowEstimator | None,
    lmbda: float,
) -> StepResult:
    """SPyNet: multi-scale warping loss, plus the end-point error at every pyramid level to the
    exact flow where it is known and to the teacher's flow elsewhere (when there is a teacher)."""
    x_ref, x = batch[:, 0], batch[:, 1]
    with _level_flows(model.spynet) as level_flows, autocast():
        flow = model.spynet(x, x_ref).float()
    loss = losses.multiscale_warping_loss(x_ref, x, flow)
    target, known = flow_targets if flow_targets is not None else (None, None)
    if teacher is not None:
        if target is None or known is None:
            target = torch.zeros_like(flow)
            known = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        unknown = ~known
        if bool(unknown.any()):
            target = target.clone()
            target[unknown] = teacher(x[unknown], x_ref[unknown])
        known = torch.ones_like(known)
    if target is not None and known is not None and bool(known.any()):
        levels = [f[known] for f in level_flows]
        loss = loss + _pyramid_endpoint_error(levels, target[known]) * known.float().mean()
    loss.backward()
    warped = backward_warp(x_ref, flow.detach())
    return StepResult(float(loss.detach()), 0.0, float(losses.mse(warped, x)), lmbda)


def _sequence_step(
    model: VideoModel,
    phase: Phase,
    batch: Tensor,
    lmbda: float,
    autocast: Callable[[], object],
    rng: np.random.Generator,
    motion_search: FlowEstimator | None = None,
) -> StepResult:
    """IPP...P on decoded references: the I-frame from the intra coder at the encoder's
    intra λ of :func:`frame_rates` (trained only when the phase trains it or fits its priors; at
    :func:`degraded_intra_lambda` with ``phase.degraded_start``), every P-frame from the
    references the decoder would hold."""
    scope = entropy_scope(phase.parts)
    fits_intra = phase.kind == "priors" and (scope is None or "intra" in scope)
    train_intra = "intra" in phase.parts or fits_intra
    totals = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}
    frames = batch.shape[1]
    x = batch[:, 0]
    if phase.degraded_start:
        coded_at = degraded_intra_lambda(model, lmbda, rng)
    else:
        coded_at = frame_rates(model, lmbda).intra
    with torch.set_grad_enabled(train_intra), autocast():
        out = model(x, coded_at)
    figures = frame_loss(out, x, coded_at)
    counted = 0
    if train_intra:
        (figures["loss"] / frames).backward()
        counted = 1
        for k in totals:
            totals[k] += float(figures[k].detach())
    refs = References([to_reference(out.x_hat.detach().float())])
    for t in range(1, frames):
        x = batch[:, t]
        with autocast():
            flow = None if motion_search is None else motion_search(x, refs.frames[-1])
            out = _p_frame(model, x, refs, lmbda, flow)
        figures = frame_loss(out, x, lmbda)
        (figures["loss"] / (frames - 1 + counted)).backward()
        for k in totals:
            totals[k] += float(figures[k].detach())
        refs = refs.push(to_reference(out.x_hat.detach().float()), out.flow_hat.detach().float())
    coded = frames - 1 + counted
    return StepResult(totals["loss"] / coded, totals["bpp"] / coded, totals["mse"] / coded, lmbda)
