"""The training loop: phases, optimisers, the plan, and one run from start to checkpoint.

A run trains for ``--steps`` steps or ``--minutes`` minutes (whichever comes first) and always
ends with a checkpoint, so that training works in short runs as well as long ones: the next run
with ``--resume`` continues exactly where the last one stopped (model, optimisers, phase and
progress, every random generator, data sampler). The phase comes from the schedule of
:mod:`canfvc_codec.train.phases` and the run's progress through its *plan* (a number of steps or
of training minutes, fixed when the run starts and kept in the checkpoint); ``--phase`` trains one
phase only.

Started by ``torchrun``, a run is data-parallel (:mod:`canfvc_codec.train.distributed`): every
rank trains a replica on its own batches (:mod:`canfvc_codec.train.batches`), the gradients are
averaged after each step, the ranks agree on when to stop and checkpoint, and rank 0 writes.

Files in the checkpoint folder: ``last.pt`` and snapshots (``--snapshot DIR``; both
:mod:`canfvc_codec.train.checkpoint`), ``log.csv`` and ``curves.png``
(:mod:`canfvc_codec.train.log`). ``--resume`` takes ``last.pt`` when the checkpoint folder has
one, else a snapshot found there. ``--export`` writes the model and its card
(:mod:`canfvc_codec.train.card`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from canfvc_codec.defaults import DEFAULT_CONFIG
from canfvc_codec.device import resolve_device
from canfvc_codec.encoder import motion
from canfvc_codec.entropy import FactorizedPrior, GaussianConditional
from canfvc_codec.errors import CanfvcError, UsageError
from canfvc_codec.networks import ModelConfig, VideoModel, get_config
from canfvc_codec.networks.video import PAD_MULTIPLE
from canfvc_codec.train import datasets, losses, phases
from canfvc_codec.train.batches import BatchStream, Request
from canfvc_codec.train.card import export_model, training_summary
from canfvc_codec.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    Progress,
    read_checkpoint,
    stored_data_state,
    stored_progress,
    write_checkpoint,
    write_snapshot,
)
from canfvc_codec.train.data import TrainingData
from canfvc_codec.train.distributed import SINGLE, DataParallel, World
from canfvc_codec.train.divergence import RECOVERY_LR_FACTOR, DivergenceWatch
from canfvc_codec.train.log import (
    CURVES_NAME,
    LOG_EVERY_SECONDS,
    LOG_EVERY_STEPS,
    LOG_NAME,
    Window,
    append_rows,
    log_row,
    plot_curves,
    window_psnr,
)
from canfvc_codec.weights import load_model_and_card

DEFAULT_CROP = {"cuda": 256, "cpu": 128}
DEFAULT_BATCH = {"cuda": 8, "cpu": 2}  # per rank
# DataLoader workers per rank: on a GPU the batches are drawn beside training; on the CPU the
# cores are better spent on training itself.
DEFAULT_WORKERS = {"cuda": 4, "cpu": 0}
PRECISIONS = ("bf16", "fp32")
# The longest sequence the schedule draws: a data set's sequences must be at least this long
# (a run of one phase needs only that phase's, :func:`longest_sequence`).
LONGEST_SEQUENCE = max(p.frames for p in phases.SCHEDULE)


def longest_sequence(phase: str | None) -> int:
    """The longest sequence a run draws: the schedule's, or that of the one phase it trains."""
    if phase is None:
        return LONGEST_SEQUENCE
    return phases.get_phase(phase).frames


DEFAULT_PLAN_MINUTES = 60.0
AUX_LR = 1e-3  # the factorised priors' quantiles (CompressAI's default)
# The factorised priors' density networks learn this much faster than the coders: they start
# about ten times too wide, and at the coders' learning rate they would still be far from the
# hyper-latents' distribution after the few thousand steps of a short run.
DENSITY_LR_SCALE = 10.0
# Half the flow phase's pairs are stills, whose exact flow supervises SPyNet.
FLOW_STILL_FRACTION = 0.5
GRAD_CLIP = 1.0  # gradient norm clip: keeps early ANF training stable
STOP_MARGIN_SECONDS = 30.0  # left for the final checkpoint and export in a timed run


@dataclass
class TrainOptions:
    """Everything a run needs; the command line fills it in."""

    config: str = DEFAULT_CONFIG
    device: str = "auto"
    crop: int | None = None
    batch: int | None = None
    phase: str | None = None
    steps: int | None = None
    minutes: float | None = None
    plan_steps: int | None = None
    plan_minutes: float | None = None
    ckpt: Path = Path("checkpoints") / DEFAULT_CONFIG
    dataset: str = "builtin"  # builtin | vimeo90k | folder (canfvc_codec.train.datasets)
    data_root: Path | None = None
    workers: int | None = None  # DataLoader workers per rank; default DEFAULT_WORKERS
    resume: bool = False
    init_weights: Path | None = None
    export: Path | None = None
    snapshot: Path | None = None
    clips: Path | None = None
    seed: int = 0
    checkpoint_minutes: float = 5.0
    precision: str | None = None  # "bf16" | "fp32"; default bf16 on CUDA, fp32 on CPU
    use_stills: bool = True
    progress: bool = True
    # Whose flows the motion coders learn to code: the motion search of the encoder. None: the
    # resumed run's, or canfvc_codec.encoder.motion's default for a new one.
    motion_search: str | None = None
    # Every phase's learning rate times this: below 1 for a last, annealing run, which lets the
    # weights settle where the schedule's rate keeps them moving.
    lr_factor: float = 1.0


def rank_device(name: str, world: World = SINGLE) -> torch.device:
    """The device of ``name`` (:func:`canfvc_codec.device.resolve_device`); with several ranks,
    each rank's GPU is its local rank's."""
    device = resolve_device(name)
    if device.type == "cuda" and world.is_distributed:
        if name not in ("cuda", "auto"):
            raise UsageError(f"--device {name} with several ranks: use --device cuda")
        return torch.device("cuda", world.local_rank)
    return device


def check_options(options: TrainOptions, crop: int, workers: int) -> None:
    """Refuse options no run can train with (``crop`` and ``workers`` as the run resolved them)."""
    if workers < 0:
        raise UsageError(f"--workers {workers} must be 0 or more")
    if crop % PAD_MULTIPLE:
        raise UsageError(f"--crop {crop} must be a multiple of {PAD_MULTIPLE}")
    if options.phase is not None:
        phases.get_phase(options.phase)


def run_precision(options: TrainOptions, device: torch.device) -> str:
    """The autocast precision of a run: ``--precision``, else bf16 on CUDA and fp32 elsewhere.
    On CUDA it also lets matrix products and convolutions use TF32 and cuDNN pick its kernels."""
    precision = options.precision or ("bf16" if device.type == "cuda" else "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (bf16 or fp32)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return precision


def _fp32_forward(forward: Callable[..., object], device_type: str) -> Callable[..., object]:
    """``forward`` run in float32 with autocast off: likelihoods are differences of CDFs, which
    bf16 cannot resolve, and the rate is exactly what the loss must get right."""

    @functools.wraps(forward)
    def run(*args: object, **kwargs: object) -> object:
        with torch.autocast(device_type=device_type, enabled=False):
            cast = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
            return forward(*cast, **kwargs)

    return run


def keep_entropy_models_fp32(model: nn.Module, device_type: str) -> None:
    for module in model.modules():
        if isinstance(module, GaussianConditional | FactorizedPrior):
            module.forward = _fp32_forward(module.forward, device_type)  # type: ignore[method-assign]


def make_optimizers(
    model: VideoModel, extra: list[nn.Parameter]
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The optimiser of the model (two groups: the coders with ``extra``, and the factorised
    priors' densities at :data:`DENSITY_LR_SCALE` times the rate) and that of the priors'
    quantiles, which the auxiliary loss trains. The group order is the checkpoints'."""
    aux = [p for n, p in model.named_parameters() if n.endswith(phases.QUANTILES)]
    density = phases.prior_density_parameters(model)
    apart = {id(p) for p in aux + density}
    main = [p for p in model.parameters() if id(p) not in apart] + extra
    optimizer = torch.optim.Adam(
        [
            {"params": main, "lr_scale": 1.0},
            {"params": density, "lr_scale": DENSITY_LR_SCALE},
        ],
        lr=phases.SCHEDULE[0].lr,
    )
    return optimizer, torch.optim.Adam(aux, lr=AUX_LR)


def new_plan(options: TrainOptions) -> tuple[int | None, float | None]:
    """(plan steps, plan seconds) of a new run: ``--plan-steps``/``--plan-minutes``, else its
    ``--steps`` when only those are given, else its ``--minutes`` (default an hour)."""
    plan_steps = options.plan_steps
    plan_seconds = options.plan_minutes * 60 if options.plan_minutes else None
    if not plan_steps and not plan_seconds:
        if options.steps and not options.minutes:
            plan_steps = options.steps
        else:
            plan_seconds = (options.minutes or DEFAULT_PLAN_MINUTES) * 60
    return plan_steps, plan_seconds


def resumed_plan(progress: Progress, options: TrainOptions) -> tuple[int | None, float | None]:
    """(plan steps, plan seconds) of a resumed run: an explicit plan replaces the stored one."""
    plan = progress.plan_steps, progress.plan_seconds
    if options.plan_steps:
        plan = options.plan_steps, None
    if options.plan_minutes:
        plan = None, options.plan_minutes * 60
    return plan


class Trainer:
    """One training run (see the module docstring).

    A lab experiment trains through a subclass (:mod:`canfvc_codec.lab.binary_intra`): it may
    train a module of its own beside the model (:meth:`_make_side_module`, kept in the
    checkpoint, never exported), with another latent quantiser (:attr:`quantizer`), and replace
    the steps of a phase (:meth:`_sequence_frames`, :meth:`_phase_step`).
    """

    # The latent quantiser the run trains with, kept in the checkpoint's options: the codec's
    # rounding. A checkpoint of another resumes only in the trainer that trains it.
    quantizer = "round"

    def __init__(
        self,
        options: TrainOptions,
        *,
        data: TrainingData | BatchStream | None = None,
        world: World = SINGLE,
        started: float | None = None,
    ) -> None:
        self.options = options
        self.started = time.monotonic() if started is None else started
        self.world = world
        self.device = rank_device(options.device, world)
        self.parallel = DataParallel(world, self.device)
        kind = self.device.type
        self.crop = options.crop or DEFAULT_CROP[kind]
        self.batch = options.batch or DEFAULT_BATCH[kind]
        self.workers = DEFAULT_WORKERS[kind] if options.workers is None else options.workers
        check_options(options, self.crop, self.workers)
        self.precision = run_precision(options, self.device)

        self.ckpt_dir = Path(options.ckpt)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = self._shared_checkpoint()
        self.config: ModelConfig = self._checkpoint_config(checkpoint)
        torch.manual_seed(options.seed)
        self.model = VideoModel(self.config).to(self.device).train()
        if self.precision == "bf16":
            keep_entropy_models_fp32(self.model, kind)
        self.side_module = self._make_side_module()
        side = list(self.side_module.parameters()) if self.side_module is not None else []
        self.optimizer, self.aux_optimizer = make_optimizers(self.model, side)
        # The same on every rank: the rate of each batch and the other choices a step makes
        # are those of the global batch.
        self.rng = np.random.default_rng(options.seed + 1)
        # The data is decoded and loaded on first use, so that exporting needs none.
        self._given_data = data
        self._data: BatchStream | None = None
        self._data_state: dict | None = None
        self.teacher = motion.dis_flow()  # SPyNet's teacher in the flow phase
        self.motion_search = options.motion_search or motion.DEFAULT_MOTION_SEARCH
        self.progress = Progress()
        self.active: phases.Phase | None = None
        # Every phase's learning rate times this: the option's factor, halved at each recovery.
        self.lr_factor = options.lr_factor
        self.watch = DivergenceWatch()
        self._healthy_state: dict | None = None  # the state to go back to, kept at checkpoints

        if checkpoint:
            self._restore(checkpoint)
        else:
            self._seed_rank(options.seed, step=0)
            if options.init_weights is not None:
                self._load_init_weights(Path(options.init_weights))
            self.progress.plan_steps, self.progress.plan_seconds = new_plan(options)
        # The motion search whose flows the motion coders learn to code (None: SPyNet's).
        self.flow_estimator = motion.motion_search(self.motion_search)
        if checkpoint:
            self.progress.plan_steps, self.progress.plan_seconds = resumed_plan(
                self.progress, options
            )
        # Replicas start equal (rank 0's weights), whatever each rank read or drew.
        self.parallel.broadcast_module(self.model)
        if self.side_module is not None:
            self.parallel.broadcast_module(self.side_module)
        self._stop_requested = False
        self._log_rows: list[dict] = []

    def _make_side_module(self) -> nn.Module | None:
        """A module trained beside the model (on the device, the model built): a lab
        experiment's; the product trains the model alone."""
        return None

    def _checkpoint_config(self, checkpoint: dict | None) -> ModelConfig:
        """The model configuration: the checkpoint's, which ``--config`` must then name."""
        options = self.options
        config_name = checkpoint["config_name"] if checkpoint else options.config
        if checkpoint and config_name != options.config:
            raise UsageError(
                f"the checkpoint in {self.ckpt_dir} is a {config_name!r} model, "
                f"not {options.config!r}"
            )
        return get_config(config_name)

    def _seed_rank(self, seed: int, step: int) -> None:
        """Give every rank but the first its own torch generator (the noise that stands for
        quantisation in training), derived from the seed, the rank and the step."""
        if self.world.rank == 0:
            return
        derived = np.random.SeedSequence([seed, self.world.rank, step]).generate_state(1)[0]
        torch.manual_seed(int(derived))

    @property
    def data(self) -> BatchStream:
        """This rank's batches, from the data set of ``--dataset`` unless one was given."""
        if self._data is None:
            given = self._given_data
            if given is None or isinstance(given, TrainingData):
                # Workers draw on the CPU; without them, batches are drawn on the device.
                device = self.device if self.workers == 0 else torch.device("cpu")
                sampler = given if given is not None else self._training_data(device)
                self._data = BatchStream(
                    sampler,
                    self.batch,
                    seed=self.options.seed,
                    rank=self.world.rank,
                    workers=self.workers,
                    device=self.device,
                )
            else:  # a batch source of its own (tests)
                self._data = given
            if self._data_state is not None:
                self._data.load_state_dict(self._data_state)
            self.progress.data_sources = self._data.sources
        return self._data

    def _longest_sequence(self) -> int:
        """The longest sequence this run draws (:func:`longest_sequence`)."""
        return longest_sequence(self.options.phase)

    def _training_data(self, device: torch.device) -> TrainingData:
        options = self.options
        return datasets.training_data(
            options.dataset,
            self.crop,
            self._longest_sequence(),
            data_root=options.data_root,
            clips=options.clips,
            seed=options.seed,
            device=device,
            use_stills=options.use_stills,
        )

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.ckpt_dir / CHECKPOINT_NAME

    def _shared_checkpoint(self) -> dict | None:
        """The checkpoint to resume from (with ``--resume``), read by rank 0 and handed to
        every rank (so that the checkpoint folder need not be on storage that every machine
        sees)."""
        loaded: dict | None = None
        error: CanfvcError | None = None
        if self.world.is_main and self.options.resume:
            try:
                loaded = read_checkpoint(self.ckpt_dir)
            except CanfvcError as err:
                error = err
        loaded, error = self.parallel.broadcast_object((loaded, error))  # type: ignore[misc]
        if error is not None:
            raise error
        return loaded

    def _load_init_weights(self, path: Path) -> None:
        model, model_id, card = load_model_and_card(str(path))
        if model.config.to_dict() != self.config.to_dict():
            raise UsageError(
                f"{path} holds a {model.config.name!r} model, not {self.config.name!r}"
            )
        self.model.load_state_dict(model.state_dict())
        self.progress.lineage = [*card.get("lineage", []), training_summary(card, model_id.hex())]

    def _torch_rng(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def state_dict(self) -> dict:
        """The checkpoint; every rank must call it (it gathers each rank's torch generator).
        Its keys and their order are the format of ``last.pt`` (:mod:`.checkpoint`)."""
        ranks_rng = self.parallel.gather_objects(self._torch_rng())
        rng = {**self._torch_rng(), "numpy": self.rng.bit_generator.state}
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config_name": self.config.name,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "progress": asdict(self.progress),
            "phase": self.active.name if self.active else None,
            "rng": rng,
            "ranks_rng": ranks_rng,
            "data": self._data.state_dict() if self._data is not None else self._data_state,
            "options": {
                "crop": self.crop,
                "batch": self.batch,
                "ranks": self.world.size,
                "seed": self.options.seed,
                "precision": self.precision,
                "quantizer": self.quantizer,
                "motion_search": self.motion_search,
            },
            # The side module's state, under the name of the first one (binary intra latents).
            "intra_latent": self.side_module.state_dict() if self.side_module else None,
        }

    def _restore_optimizers(self, state: dict) -> None:
        groups = len(state["optimizer"]["param_groups"])
        if groups != len(self.optimizer.param_groups):
            # A checkpoint from before the density networks had their own group: its moments
            # are dropped, as when resuming from a snapshot.
            print(
                f"canfvc: note: optimiser state of an older layout ({groups} groups): "
                "fresh moments",
                file=sys.stderr,
            )
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])

    def _restore(self, state: dict) -> None:
        stored = state.get("options", {})
        stored_quantizer = stored.get("quantizer", "round")
        if stored_quantizer != self.quantizer:
            raise UsageError(
                f"the checkpoint in {self.ckpt_dir} was trained with --quantizer "
                f"{stored_quantizer}, not {self.quantizer}"
            )
        self.model.load_state_dict(state["model"])
        if self.side_module is not None:
            self.side_module.load_state_dict(state["intra_latent"])
        if "optimizer" in state:  # a snapshot carries no optimiser moments
            self._restore_optimizers(state)
        self.progress = stored_progress(state)
        # A resumed run keeps its crop and batch unless the command line names others.
        self.crop = self.options.crop or stored.get("crop", self.crop)
        self.batch = self.options.batch or stored.get("batch", self.batch)
        # Checkpoints from before the option trained the motion coders on SPyNet's flows.
        stored_search = stored.get("motion_search", motion.SPYNET)
        self.motion_search = self.options.motion_search or stored_search
        self._restore_torch_rng(state)
        self.rng.bit_generator.state = state["rng"]["numpy"]
        seed = stored.get("seed", self.options.seed)
        data_state = stored_data_state(state, seed, self.progress.step, self._data is not None)
        if self._data is not None:
            self._data.load_state_dict(data_state)
        else:
            self._data_state = data_state
        if state.get("phase"):
            self._switch(phases.get_phase(state["phase"]))

    def _restore_torch_rng(self, state: dict) -> None:
        """Rank 0 goes on with the stored generator; another rank with its own when the run had
        that rank, else with one derived from its rank and the step."""
        rank = self.world.rank
        stored = state.get("ranks_rng") or [state["rng"]]
        if rank >= len(stored):
            self._seed_rank(state.get("options", {}).get("seed", 0), self.progress.step)
            return
        torch.set_rng_state(stored[rank]["torch"])
        if self.device.type == "cuda" and "cuda" in stored[rank]:
            torch.cuda.set_rng_state(stored[rank]["cuda"], self.device)

    def save_checkpoint(self) -> Path:
        """Write ``last.pt`` atomically, then the log, the curves and the snapshot.

        Every rank calls it; rank 0 writes.
        """
        state = self.state_dict()
        self._healthy_state = copy.deepcopy(state)  # checkpoints are written only when healthy
        if not self.world.is_main:
            return self.checkpoint_path
        write_checkpoint(state, self.checkpoint_path)
        self._flush_log()
        plot_curves(self.ckpt_dir / LOG_NAME, self.ckpt_dir / CURVES_NAME)
        if self.options.snapshot is not None:
            self.save_snapshot(Path(self.options.snapshot), state)
        return self.checkpoint_path

    def save_snapshot(self, folder: Path, state: dict | None = None) -> list[Path]:
        """Write the compact, shardable form of the checkpoint (``state``, by default this
        process's) into ``folder``."""
        state = self.state_dict() if state is None else state
        return write_snapshot(folder, state, self.model.state_dict(), self.ckpt_dir)

    # --- phases --------------------------------------------------------------------------------
    def current_phase(self) -> phases.Phase:
        if self.options.phase:
            return phases.get_phase(self.options.phase)
        return phases.phase_at(self.progress.fraction())

    def _switch(self, phase: phases.Phase) -> None:
        phases.set_trainable(self.model, phase.parts)
        for group in self.optimizer.param_groups:
            group["lr"] = phase.lr * self.lr_factor * group["lr_scale"]
        self.active = phase

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- one step ------------------------------------------------------------------------------
    def step(self) -> phases.StepResult:
        """One optimisation step of the current phase."""
        phase = self.current_phase()
        if phase is not self.active:
            self._switch(phase)
        targets = None
        if phase.kind == "flow":
            pairs = Request(2, flow_still_fraction=FLOW_STILL_FRACTION)
            batch, flows, known = self.data.next(pairs)
            targets = (flows, known)
        else:
            batch = self.data.next(Request(self._sequence_frames(phase)))
        lmbda = losses.sample_lambda(self.rng)
        self.optimizer.zero_grad(set_to_none=True)
        result = self._phase_step(phase, batch, lmbda, targets)
        parameters = list(self.model.parameters())
        if self.side_module is not None:
            parameters += list(self.side_module.parameters())
        # Every rank then holds the gradient of the global batch, and its figures: a loss that
        # is not finite on one rank makes every rank skip the step.
        self.parallel.average_gradients(parameters)
        loss, bpp, mse = self.parallel.mean([result.loss, result.bpp, result.mse])
        result = phases.StepResult(loss, bpp, mse, result.lmbda)
        trainable = [p for p in parameters if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(trainable, GRAD_CLIP) if trainable else None
        if math.isfinite(result.loss) and (norm is None or torch.isfinite(norm)):
            self.optimizer.step()
        else:
            self.progress.skipped_steps += 1
        self.aux_optimizer.zero_grad(set_to_none=True)
        self.model.aux_loss().backward()
        # The auxiliary loss depends on the weights alone, equal on every rank; averaging its
        # tiny gradient anyway keeps the replicas equal on devices whose kernels differ.
        self.parallel.average_gradients(self.aux_optimizer.param_groups[0]["params"])
        self.aux_optimizer.step()
        self.progress.step += 1
        if not self.options.phase:
            self.progress.schedule_steps += 1
        self.progress.phase_steps[phase.name] = self.progress.phase_steps.get(phase.name, 0) + 1
        if self.lr_factor != 1.0:
            factors = self.progress.factor_steps.setdefault(phase.name, {})
            factor = f"{self.lr_factor:g}"
            factors[factor] = factors.get(factor, 0) + 1
        return result

    def _sequence_frames(self, phase: phases.Phase) -> int:
        """Frames of each training sequence of ``phase``."""
        return phase.frames

    def _phase_step(
        self,
        phase: phases.Phase,
        batch: torch.Tensor,
        lmbda: float,
        flow_targets: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> phases.StepResult:
        """Forward and backward passes of one step of ``phase`` (:func:`phases.run_step`)."""
        return phases.run_step(
            self.model,
            phase,
            batch,
            lmbda,
            self.rng,
            self.autocast,
            self.teacher,
            flow_targets,
            motion_search=self.flow_estimator,
        )

    # --- the loop ------------------------------------------------------------------------------
    def _deadline(self) -> float | None:
        if self.options.minutes is None:
            return None
        return self.started + self.options.minutes * 60 - STOP_MARGIN_SECONDS

    @contextlib.contextmanager
    def _stop_on_signal(self) -> Iterator[None]:
        """SIGTERM ends the run cleanly with a checkpoint, like reaching the time limit."""

        def request(signum: int, frame: object) -> None:
            self._stop_requested = True

        try:
            previous = signal.signal(signal.SIGTERM, request)
        except ValueError:  # not the main thread
            previous = None
        try:
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def run(self) -> Progress:
        """Train until ``--steps``/``--minutes`` (or a signal), then checkpoint and export."""
        from tqdm import tqdm

        options = self.options
        deadline = self._deadline()
        last_checkpoint = time.monotonic()
        window: Window = []
        window_started = time.monotonic()
        step_seconds = 0.0
        done = 0
        self._healthy_state = copy.deepcopy(self.state_dict())  # where a divergence goes back to
        bar = tqdm(
            total=options.steps,
            disable=not options.progress or not self.world.is_main,
            unit="step",
            dynamic_ncols=True,
            desc=self.config.name,
        )
        with self._stop_on_signal(), bar:
            try:
                while True:
                    stop = self._stop_requested
                    stop |= options.steps is not None and done >= options.steps
                    stop |= deadline is not None and time.monotonic() + step_seconds > deadline
                    # Every rank stops at the same step: each reads its own clock and signals.
                    if self.parallel.any(stop):
                        break
                    if window and self.current_phase() is not self.active:
                        self._close_window(window)  # one log row never mixes two phases
                        window, window_started = [], time.monotonic()
                    tic = time.monotonic()
                    result = self.step()
                    # The plan's clock is the slowest rank's, the same on every rank, so that
                    # a plan in minutes switches phases at the same step everywhere.
                    seconds = self.parallel.max(time.monotonic() - tic)
                    # The next step is assumed as slow as the slowest recent one.
                    step_seconds = max(seconds, step_seconds * 0.9)
                    self._account(seconds)
                    done += 1
                    window.append((result, seconds))
                    bar.update(1)
                    bar.set_postfix(
                        phase=self.active.name if self.active else "",
                        loss=f"{result.loss:.3g}",
                        bpp=f"{result.bpp:.3f}",
                        psnr=f"{losses.psnr(result.mse):.2f}",
                    )
                    # Windows end at the same step on every rank (the clock's verdict is
                    # agreed), so that the divergence watch sees the same PSNR everywhere.
                    if len(window) >= LOG_EVERY_STEPS or self.parallel.any(
                        time.monotonic() - window_started >= LOG_EVERY_SECONDS
                    ):
                        self._close_window(window)
                        window, window_started = [], time.monotonic()
                    due = time.monotonic() - last_checkpoint >= options.checkpoint_minutes * 60
                    # None while the run may be diverging: it would replace the healthy one.
                    if self.parallel.any(due) and self.watch.healthy:
                        self.save_checkpoint()
                        last_checkpoint = time.monotonic()
            except KeyboardInterrupt:
                pass
            if window:
                self._close_window(window)
            if not self.watch.healthy:  # stopped while it may be diverging: keep the healthy state
                self._recover()
            if done:  # a run that trained nothing (an export) leaves the checkpoint alone
                self.save_checkpoint()
        if self._data is not None:
            self._data.close()
        if options.export is not None and self.world.is_main:
            export_model(self, Path(options.export))
        return self.progress

    def _account(self, seconds: float) -> None:
        self.progress.seconds += seconds
        if not self.options.phase:
            self.progress.schedule_seconds += seconds
        # Device time counts every device: a GPU per rank, but one CPU per machine, which the
        # machine's ranks share (one thread each), as one process's threads do.
        kind = self.device.type
        spent = seconds * (self.world.size if kind == "cuda" else self.world.machines)
        self.progress.device_seconds[kind] = self.progress.device_seconds.get(kind, 0.0) + spent

    # --- divergence ----------------------------------------------------------------------------
    def _close_window(self, window: Window) -> None:
        """Log a window of steps and show its PSNR to the divergence watch (the figures are the
        global batch's, so every rank decides alike)."""
        psnr = window_psnr(window)
        self._record(window, psnr)
        if self.watch.observe(self.active.name if self.active else "", psnr):
            self._recover()

    def _recover(self) -> None:
        """Go back to the last healthy state (the last checkpoint, or the run's start) with the
        learning rate lowered by :data:`RECOVERY_LR_FACTOR`. The time spent since still counts."""
        assert self._healthy_state is not None
        diverged_at = self.progress.step
        seconds, device_seconds = self.progress.seconds, dict(self.progress.device_seconds)
        self._restore(copy.deepcopy(self._healthy_state))
        self.progress.seconds, self.progress.device_seconds = seconds, device_seconds
        self.lr_factor *= RECOVERY_LR_FACTOR
        self._switch(self.current_phase())
        self.watch.reset()
        self.progress.recoveries.append(
            {"diverged_at": diverged_at, "back_to": self.progress.step, "lr_factor": self.lr_factor}
        )
        if self.world.is_main:
            print(
                f"canfvc: note: training diverged at step {diverged_at}: back to step "
                f"{self.progress.step}, learning rate x{self.lr_factor:g}",
                file=sys.stderr,
            )

    # --- logs ----------------------------------------------------------------------------------
    def _record(self, window: Window, psnr: float) -> None:
        """One log row: the window's mean figures, ``psnr`` that of its mean MSE."""
        if not self.world.is_main:  # rank 0 writes the log; its figures are the global batch's
            return
        phase = self.active.name if self.active else ""
        self._log_rows.append(
            log_row(window, psnr, self.progress.step, phase, self.progress.seconds)
        )

    def _flush_log(self) -> None:
        append_rows(self.ckpt_dir / LOG_NAME, self._log_rows)
        self._log_rows = []
