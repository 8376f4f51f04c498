"""The files of a training run's checkpoint folder: ``last.pt``, and snapshots.

``last.pt`` is a ``torch.save`` of the dict :meth:`~canfvc_codec.train.trainer.Trainer.state_dict`
builds (format ``canfvc-train``, version 1): the model, both optimisers, the :class:`Progress`,
the active phase, every random generator, the data sampler's state and the run's options.

A *snapshot* is the compact form of a checkpoint for moving a run between machines whose
transfers are limited to small files: the same dict without the model and optimisers
(``snapshot.pt``, format ``canfvc-train-snapshot``), the model's weights in fp16 shards under
16 MiB (``weights-NN.pt``), and copies of the log and the curves. A run resumed from a snapshot
starts fresh Adam moments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from canfvc_codec.errors import UsageError
from canfvc_codec.train.log import CURVES_NAME, LOG_NAME

CHECKPOINT_NAME = "last.pt"
SNAPSHOT_NAME = "snapshot.pt"
SHARD_PATTERN = "weights-{:02d}.pt"
SHARD_BYTES = 15 * (1 << 20)  # each snapshot file stays under the 16 MiB a transfer allows
SNAPSHOT_DTYPE = torch.float16
CHECKPOINT_FORMAT = "canfvc-train"
SNAPSHOT_FORMAT = "canfvc-train-snapshot"
CHECKPOINT_VERSION = 1
# What a snapshot leaves out of the checkpoint dict: the weights go to shards, and the optimiser
# moments are too large to move.
NOT_IN_SNAPSHOT = ("model", "optimizer", "aux_optimizer")


@dataclass
class Progress:
    """Where a training run stands; saved in every checkpoint."""

    step: int = 0
    seconds: float = 0.0  # training time so far, all runs together
    plan_steps: int | None = None
    plan_seconds: float | None = None
    phase_steps: dict[str, int] = field(default_factory=dict)
    device_seconds: dict[str, float] = field(default_factory=dict)
    skipped_steps: int = 0  # steps whose loss was not finite
    # Steps and seconds that followed the schedule: runs forced to one phase (--phase) train
    # the model without moving the schedule on.
    schedule_steps: int = 0
    schedule_seconds: float = 0.0
    # The training of the weights this run started from (--init-weights), oldest first.
    lineage: list[dict] = field(default_factory=list)
    # What the sampler drew from (clips, stills, licences), as the latest run found the cache.
    data_sources: dict = field(default_factory=dict)
    # Steps of each phase taken at a learning rate other than the schedule's: phase -> the
    # factor (TrainOptions.lr_factor, as text) -> steps.
    factor_steps: dict[str, dict[str, int]] = field(default_factory=dict)
    # Each time the run diverged and went back to its last healthy state (train/divergence.py):
    # the step it diverged at, the step it went back to, and the learning-rate factor after.
    recoveries: list[dict] = field(default_factory=list)

    def fraction(self) -> float:
        if self.plan_steps:
            return self.schedule_steps / self.plan_steps
        if self.plan_seconds:
            return self.schedule_seconds / self.plan_seconds
        return 0.0


def stored_progress(state: dict) -> Progress:
    """The progress of checkpoint ``state``, filled in for checkpoints from before a field."""
    progress = Progress(**state["progress"])
    if "schedule_steps" not in state["progress"]:  # until then every run followed the schedule
        progress.schedule_steps = progress.step
        progress.schedule_seconds = progress.seconds
    return progress


def stored_data_state(state: dict, seed: int, step: int, stream_started: bool) -> dict | None:
    """The data sampler's state of checkpoint ``state`` (``seed``: the run's, ``step``: the
    checkpoint's), in today's form; None when the sampler has not started and the checkpoint
    holds no state."""
    data_state = state["data"]
    if data_state is None and stream_started:
        # A state from before the first batch (a run's start): the stream starts again.
        data_state = {"seed": seed, "drawn": 0}
    if data_state is not None and "drawn" not in data_state:
        # Checkpoints from before batches were drawn by number held one sampler generator:
        # go on from as many batches as steps were taken.
        data_state = {"seed": seed, "drawn": step}
    return data_state


def read_checkpoint(folder: Path) -> dict | None:
    """The checkpoint to resume from in ``folder``: ``last.pt``, else a snapshot, else None."""
    path = folder / CHECKPOINT_NAME
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
            raise UsageError(f"{path} is not a canfvc training checkpoint")
        return state
    if (folder / SNAPSHOT_NAME).is_file():
        return read_snapshot(folder)
    return None


def write_checkpoint(state: dict, path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash mid-write leaves the previous one)."""
    part = path.with_suffix(".part")
    torch.save(state, part)
    part.replace(path)
    return path


def _save_atomic(payload: object, path: Path) -> Path:
    part = path.with_name(path.name + ".part")
    torch.save(payload, part)
    part.replace(path)
    return path


def read_snapshot(folder: Path) -> dict:
    """A snapshot as a checkpoint dict (fp32 weights, no optimiser state)."""
    state = torch.load(folder / SNAPSHOT_NAME, map_location="cpu", weights_only=False)
    if state.get("format") != SNAPSHOT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{folder / SNAPSHOT_NAME} is not a canfvc training snapshot")
    model: dict[str, torch.Tensor] = {}
    for name in state["shards"]:
        path = folder / name
        if not path.is_file():
            raise UsageError(f"snapshot shard missing: {path}")
        shard = torch.load(path, map_location="cpu", weights_only=True)
        model.update({k: (v.float() if v.is_floating_point() else v) for k, v in shard.items()})
    state["model"] = model
    return state


def _shards(weights: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``weights`` in fp16 (integer tensors as they are), cut into shards of SHARD_BYTES."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in weights.items():
        stored = tensor.detach().cpu()
        if stored.is_floating_point():
            stored = stored.to(SNAPSHOT_DTYPE)
        nbytes = stored.numel() * stored.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = stored.clone()
        size += nbytes
    return shards


def write_snapshot(
    folder: Path, state: dict, weights: dict[str, torch.Tensor], run_folder: Path
) -> list[Path]:
    """Write the snapshot of checkpoint ``state`` and the model's ``weights`` into ``folder``,
    with the log and curves of the checkpoint folder ``run_folder``; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    for key in NOT_IN_SNAPSHOT:
        state.pop(key)
    state["format"] = SNAPSHOT_FORMAT
    shards = _shards(weights)
    state["shards"] = [SHARD_PATTERN.format(k) for k in range(len(shards))]
    written = [
        _save_atomic(shard, folder / name)
        for name, shard in zip(state["shards"], shards, strict=True)
    ]
    written.append(_save_atomic(state, folder / SNAPSHOT_NAME))
    for extra in (LOG_NAME, CURVES_NAME):
        source = run_folder / extra
        if source.is_file() and folder.resolve() != run_folder.resolve():
            (folder / extra).write_bytes(source.read_bytes())
            written.append(folder / extra)
    return written
