"""The training half of a model card, and the export of a trained model with its card.

A model file carries a *card* (a dict, also written beside it as ``.json``): what the model is,
what it was trained on and how (data, phases and their steps, precision, device time), the
training of the weights it started from (``lineage``), and the RD points measured afterwards
(``rd_points``, filled in by :mod:`canfvc_codec.lab.card`). This module is the one home of what
the card says of training: the trainer writes it (:func:`model_card`), a successor's lineage sums
it up (:func:`training_summary`), and the lab reads its totals (:func:`training_totals`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Protocol

from torch import nn

from canfvc_codec.datasets import TRAIN_RANGES
from canfvc_codec.networks import ModelConfig, VideoModel
from canfvc_codec.train import losses, phases
from canfvc_codec.train.checkpoint import Progress
from canfvc_codec.train.data import STILL_NAMES
from canfvc_codec.train.distributed import World
from canfvc_codec.weights import save_model

MAX_FILE_MIB = 16.0  # the largest model file that can be committed as it is
MIB = 1 << 20
CARD_INDENT = 2  # of the card's .json


class TrainedRun(Protocol):
    """What the card reads of a training run (a :class:`~canfvc_codec.train.trainer.Trainer`)."""

    config: ModelConfig
    model: nn.Module
    progress: Progress
    crop: int
    batch: int  # per rank
    world: World
    motion_search: str
    precision: str


def training_summary(card: dict, model_id: str) -> dict:
    """What a model card says of the training behind a model, for the lineage of its successors."""
    return {
        "model_id": model_id,
        "steps": card.get("steps", 0),
        "phase_steps": {p["name"]: p["steps"] for p in card.get("phases", []) if p.get("steps")},
        "device_seconds": card.get("device_seconds", {}),
        "crop": card.get("data", {}).get("crop"),
        "batch": card.get("data", {}).get("batch"),
    }


def training_totals(card: dict) -> dict:
    """How much training the model of ``card`` has had, its lineage included: steps and device
    seconds (all devices together). A model without a card (random weights) has had none."""
    runs = [*card.get("lineage", []), card]
    return {
        "steps": sum(int(run.get("steps", 0)) for run in runs),
        "device_seconds": round(
            sum(float(s) for run in runs for s in run.get("device_seconds", {}).values()), 1
        ),
    }


def _phases(progress: Progress) -> list[dict]:
    """Every phase of the schedule, and those outside it that the run trained."""
    return [
        {
            "name": p.name,
            "description": p.description,
            "lr": p.lr,
            "steps": progress.phase_steps.get(p.name, 0),
            **(
                {"steps_at_lr_factor": progress.factor_steps[p.name]}
                if p.name in progress.factor_steps
                else {}
            ),
        }
        for p in phases.PHASES.values()
        if p in phases.SCHEDULE or progress.phase_steps.get(p.name)
    ]


def model_card(run: TrainedRun) -> dict:
    """What the model file says about its training (RD points are measured afterwards)."""
    progress = run.progress
    return {
        "name": f"canfvc-{run.config.name}",
        "config": run.config.name,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "data": {
            # Runs from before the trainer recorded its sources drew from these.
            "clips": [f"{r.clip} frames {r.start}-{r.start + r.count - 1}" for r in TRAIN_RANGES],
            "stills": f"skimage.data {', '.join(STILL_NAMES)} with synthetic camera motion",
            **progress.data_sources,
            "crop": run.crop,
            "batch": run.batch,  # per rank
            "ranks": run.world.size,
            "global_batch": run.batch * run.world.size,
            "lambda": f"log-uniform over [{losses.LAMBDA_MIN:g}, {losses.LAMBDA_MAX:g}] per batch",
        },
        "motion_search": run.motion_search,
        "phases": _phases(progress),
        "lineage": progress.lineage,
        **({"recoveries": progress.recoveries} if progress.recoveries else {}),
        "steps": progress.step,
        "skipped_steps": progress.skipped_steps,
        "device_seconds": {k: round(v, 1) for k, v in progress.device_seconds.items()},
        "precision": run.precision,
        "untrained": progress.step == 0,
        "rd_points": [],
    }


def export_model(run: TrainedRun, path: Path) -> str:
    """fp16 weights at ``path`` plus the model card beside it (same name, ``.json``); returns
    the model id as hex."""
    # A fresh model holds the weights: the trainer's own carries fp32 wrappers and frozen flags.
    clean = VideoModel(run.config)
    clean.load_state_dict(run.model.state_dict())
    card = model_card(run)
    model_id = save_model(clean, path, card)
    card["model_id"] = model_id
    card["file_mib"] = round(path.stat().st_size / MIB, 2)
    path.with_suffix(".json").write_text(json.dumps(card, indent=CARD_INDENT) + "\n")
    if card["file_mib"] > MAX_FILE_MIB:
        print(
            f"canfvc: note: {path} is {card['file_mib']} MiB, over {MAX_FILE_MIB:g} MiB",
            file=sys.stderr,
        )
    return model_id
