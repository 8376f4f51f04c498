"""``canfvc train`` / ``python -m canfvc_codec.train``: the command line of the trainer.

Only click is imported here, so that ``canfvc --help`` stays fast; torch and the networks are
imported when the command runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from canfvc_codec.defaults import DEFAULT_CONFIG
from canfvc_codec.encoder.motion import DEFAULT_MOTION_SEARCH, MOTION_SEARCHES
from canfvc_codec.threads import MAX_CPU_THREADS

if TYPE_CHECKING:
    from canfvc_codec.train.trainer import Trainer

CONFIG_NAMES = ("tiny", "tiny-small", "small", "lite", "full")
PHASE_NAMES = (
    "flow",
    "extrapolation",
    "intra",
    "ip_motion",
    "ip_inter",
    "ip_joint",
    "ipppp",
    "finetune",
    "priors",
    "entropy",
    "motion_entropy",
    "chain",
)
# Kept in step with canfvc_codec.train.datasets (not imported here: that would import torch).
DATASET_NAMES = ("builtin", "vimeo90k", "folder")
MAX_LR_FACTOR = 10.0  # a larger factor is more likely a typing slip than a plan


@click.command(
    "train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--config",
    "config",
    type=click.Choice(CONFIG_NAMES),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Model configuration.",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option(
    "--crop", type=click.IntRange(64), help="Crop side [default: 256 on CUDA, 128 on CPU]."
)
@click.option(
    "--batch",
    type=click.IntRange(1),
    help="Batch size of each rank; the global batch is this times the ranks "
    "[default: 8 on CUDA, 2 on CPU].",
)
@click.option(
    "--phase",
    type=click.Choice(PHASE_NAMES),
    help="Train this phase only, instead of following the schedule.",
)
@click.option("--steps", type=click.IntRange(0), help="Stop this run after this many steps.")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop this run after this many minutes (checkpoint and export included).",
)
@click.option(
    "--plan-steps", type=click.IntRange(1), help="Length of the whole phase schedule in steps."
)
@click.option(
    "--plan-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Length of the whole phase schedule in training minutes "
    "[default for a new run: its --minutes, else its --steps, else 60 minutes].",
)
@click.option(
    "--ckpt",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("checkpoints") / DEFAULT_CONFIG,
    show_default=True,
    help="Checkpoint folder (last.pt, log.csv, curves.png).",
)
@click.option(
    "--resume", is_flag=True, help="Continue from the checkpoint in --ckpt when there is one."
)
@click.option(
    "--init-weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Start a new run from these model weights (fresh optimiser).",
)
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    help="At the end, write fp16 weights here and the model card beside them (.json).",
)
@click.option(
    "--snapshot",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a compact snapshot (fp16 shards under 16 MiB, log, curves) here at every "
    "checkpoint; --resume with --ckpt on a folder holding one continues the run.",
)
@click.option(
    "--clips",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder holding bikes.mp4 and bigbuckbunny.mp4 [default: the clip cache].",
)
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES),
    default="builtin",
    show_default=True,
    help="builtin: the project's clips and photographs; vimeo90k: the septuplets of "
    "Vimeo-90k's training list under --data-root; folder: every video and folder of frames "
    "under --data-root.",
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="Folder of the vimeo90k or folder data set.",
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    help="DataLoader worker processes per rank that draw the batches; 0 draws them in the "
    "training process [default: 4 on CUDA, 0 on CPU].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoint-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Checkpoint interval.",
)
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp32"]),
    help="Autocast precision [default: bf16 on CUDA, fp32 on CPU].",
)
@click.option(
    "--motion-search",
    type=click.Choice(MOTION_SEARCHES),
    help="Flows the motion coders learn to code: those of the encoder's motion search (OpenCV "
    f"DIS, or the model's SPyNet) [default: the resumed run's, else {DEFAULT_MOTION_SEARCH}]. "
    "The flow phase trains SPyNet either way.",
)
@click.option(
    "--lr-factor",
    type=click.FloatRange(min=0, max=MAX_LR_FACTOR, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every phase's learning rate by this; e.g. 0.1 for a last run that lets the "
    "weights settle. The model card counts the steps taken so.",
)
@click.option("--threads", type=click.IntRange(1, MAX_CPU_THREADS), help="CPU threads for torch.")
@click.option("--no-stills", is_flag=True, help="Train on the video clips only.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(**kwargs: object) -> None:
    """Train a CANF-VC model, resumable, in short or long runs.

    Started by torchrun (``torchrun --nproc-per-node N -m canfvc_codec.train ...``), it trains
    data-parallel on N ranks: one per GPU, or N processes on the CPU.
    """
    started = time.monotonic()
    from canfvc_codec.train.trainer import Trainer

    run_training(kwargs, Trainer, started)


def run_training(
    kwargs: dict[str, object], make_trainer: Callable[..., Trainer], started: float
) -> None:
    """Train with ``make_trainer(options, world=, started=)`` (a Trainer or a lab subclass)
    under the command line's options ``kwargs``, on every rank torchrun started."""
    import torch

    from canfvc_codec.device import resolve_device
    from canfvc_codec.train import distributed
    from canfvc_codec.train.trainer import TrainOptions

    threads = kwargs.pop("threads")
    if threads:
        torch.set_num_threads(int(threads))
    use_stills = not kwargs.pop("no_stills")
    progress = not kwargs.pop("quiet")
    options = TrainOptions(**kwargs, use_stills=use_stills, progress=progress)  # type: ignore[arg-type]
    world = distributed.world_from_environment()
    device_type = resolve_device(options.device).type
    with distributed.process_group(world, device_type):
        trainer = make_trainer(options, world=world, started=started)
        result = trainer.run()
    if not world.is_main:
        return
    phase = trainer.active.name if trainer.active else "-"
    where = f"checkpoint {trainer.checkpoint_path}" if options.steps != 0 else "nothing trained"
    if options.export is not None:
        where += f"; model {options.export}"
    click.echo(
        f"step {result.step}, phase {phase}, {result.seconds / 60:.1f} training minutes; {where}",
        err=True,
    )
