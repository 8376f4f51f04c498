"""The intra phase trained with binary, differentially modulated latents instead of rounding.

    python -m canfvc_codec.lab.binary_intra --quantizer dm2 --config tiny --steps 200 \\
        --ckpt checkpoints/dm2

A training experiment on the real ANFIC intra coder: the quantisers of :mod:`canfvc_codec.quant`
(1st- or 2nd-order differential modulation along the frames of each clip, priced by a binary
entropy model; :mod:`canfvc_codec.quant.coder_adapter`) replace rounding between the coder's
analysis and synthesis. It takes the options of ``canfvc train`` except ``--phase`` (always
``intra``) and ``--export``: the codec codes with rounding, so such a model is never exported.
Compare its ``log.csv`` with a ``canfvc train --phase intra`` run of the same length.

The adapter trains beside the model and is kept in the checkpoint (``intra_latent``), which
records the quantiser: a checkpoint of this trainer resumes here only, with the same quantiser.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

import click
import torch

from canfvc_codec.errors import UsageError
from canfvc_codec.networks import VideoModel
from canfvc_codec.quant.coder_adapter import ADAPTER_KINDS, CLIP_FRAMES, BinaryLatentAdapter
from canfvc_codec.train import phases
from canfvc_codec.train.__main__ import main as train_main
from canfvc_codec.train.command import run_training, train_command
from canfvc_codec.train.trainer import Trainer, TrainOptions

PHASE = "intra"
PROG = "python -m canfvc_codec.lab.binary_intra"
# Options of canfvc train that this experiment fixes: one phase, and no model to export.
FIXED_OPTIONS = ("phase", "export")


def check_experiment(options: TrainOptions, quantizer: str) -> None:
    """Binary latents are an experiment of the intra phase: the exported model codes with
    rounding, so a run may not export, and it trains the intra phase only."""
    if quantizer not in ADAPTER_KINDS:
        raise UsageError(f"unknown quantizer {quantizer!r} (one of {', '.join(ADAPTER_KINDS)})")
    if options.export is not None:
        raise UsageError(
            f"--quantizer {quantizer} is for training experiments only; "
            "exported models code with rounding"
        )
    if options.phase != PHASE:
        raise UsageError(f"--quantizer {quantizer} needs --phase {PHASE}")


def binary_intra_step(
    model: VideoModel,
    adapter: BinaryLatentAdapter,
    batch: torch.Tensor,
    lmbda: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> phases.StepResult:
    """Every frame of the clip ``batch`` (B, T, 3, H, W) intra-coded with binary latents; the
    modulation couples the frames, so the loss is their mean and there is one backward pass."""
    with autocast():
        coding = adapter(model.intra, batch, lmbda)
    frames = [phases.frame_loss(out, batch[:, t], lmbda) for t, out in enumerate(coding.frames)]
    figures = {k: torch.stack([f[k] for f in frames]).mean() for k in ("loss", "bpp", "mse")}
    figures["loss"].backward()
    return phases.step_result(figures, lmbda)


class BinaryIntraTrainer(Trainer):
    """The trainer with binary intra latents of ``quantizer`` (``dm1`` or ``dm2``)."""

    def __init__(self, options: TrainOptions, quantizer: str, **kwargs: Any) -> None:
        check_experiment(options, quantizer)
        self.quantizer = quantizer
        super().__init__(options, **kwargs)

    @property
    def intra_latent(self) -> BinaryLatentAdapter:
        """The binary latent quantiser and its entropy model."""
        assert isinstance(self.side_module, BinaryLatentAdapter)
        return self.side_module

    def _make_side_module(self) -> BinaryLatentAdapter:
        latent_channels = self.model.intra.latent_channels
        return BinaryLatentAdapter(self.quantizer, latent_channels).to(self.device)

    def _longest_sequence(self) -> int:
        return max(super()._longest_sequence(), CLIP_FRAMES)

    def _sequence_frames(self, phase: phases.Phase) -> int:
        # The modulation runs along the frames of a clip.
        return CLIP_FRAMES if phase.kind == PHASE else super()._sequence_frames(phase)

    def _phase_step(
        self,
        phase: phases.Phase,
        batch: torch.Tensor,
        lmbda: float,
        flow_targets: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> phases.StepResult:
        if phase.kind != PHASE:
            return super()._phase_step(phase, batch, lmbda, flow_targets)
        return binary_intra_step(self.model, self.intra_latent, batch, lmbda, self.autocast)


QUANTIZER_OPTION = click.Option(
    ["--quantizer"],
    type=click.Choice(ADAPTER_KINDS),
    required=True,
    help="Binary latent quantiser: 1st- or 2nd-order differential modulation along the frames "
    "of each clip.",
)


def _train(quantizer: str, **kwargs: object) -> None:
    started = time.monotonic()
    trainer = functools.partial(BinaryIntraTrainer, quantizer=quantizer)
    run_training({**kwargs, "phase": PHASE}, trainer, started)


command = click.Command(
    "binary_intra",
    params=[
        QUANTIZER_OPTION,
        *(p for p in train_command.params if p.name not in FIXED_OPTIONS),
    ],
    callback=_train,
    help=__doc__.split("\n")[0] if __doc__ else None,
    context_settings=train_command.context_settings,
)


def main(argv: list[str] | None = None) -> None:
    train_main(argv, command, PROG)


if __name__ == "__main__":
    main()
