"""Training steps per hour of two model configurations, phase by phase, in the same run.

    python -m canfvc_codec.lab.train_speed --configs small,lite --phases intra,ip_joint,ipppp \\
        --steps 5 --threads 1 --out bench/results/train_speed.json

Each (configuration, phase) gets a fresh trainer on the same data (the training clips, same crop
and batch); one step is run first and not timed (allocations, first use of the data), then
``--steps`` steps are timed one by one and their median kept. Steps per hour follow from it, and
each configuration's figures are divided by the first one's. The machine's load counts: run both
configurations in one call so that they share it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from canfvc_codec.train.data import TrainingData
from canfvc_codec.train.trainer import Trainer, TrainOptions

SECONDS_PER_HOUR = 3600.0
WARMUP_STEPS = 1


def step_seconds(config: str, phase: str, steps: int, crop: int, batch: int, data) -> list[float]:
    """Seconds of each of ``steps`` timed steps of ``phase`` for a fresh ``config`` model."""
    with tempfile.TemporaryDirectory() as ckpt:
        options = TrainOptions(
            config=config, device="cpu", crop=crop, batch=batch, phase=phase,
            ckpt=Path(ckpt), progress=False,
        )  # fmt: skip
        trainer = Trainer(options, data=data)
        times = []
        for index in range(WARMUP_STEPS + steps):
            tic = time.perf_counter()
            trainer.step()
            if index >= WARMUP_STEPS:
                times.append(time.perf_counter() - tic)
        return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,lite")
    parser.add_argument("--phases", default="intra,ip_joint,ipppp")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    configs = options.configs.split(",")
    data = TrainingData.from_cache(options.crop, device=torch.device("cpu"))
    rows: dict[str, dict[str, dict]] = {}
    for phase in options.phases.split(","):
        rows[phase] = {}
        for config in configs:
            times = step_seconds(config, phase, options.steps, options.crop, options.batch, data)
            median = statistics.median(times)
            rows[phase][config] = {
                "seconds_per_step": round(median, 3),
                "steps_per_hour": round(SECONDS_PER_HOUR / median),
                "times": [round(t, 3) for t in times],
            }
            print(f"{phase} {config}: {median:.2f} s per step", file=sys.stderr)
        first = rows[phase][configs[0]]["seconds_per_step"]
        for config in configs[1:]:
            rows[phase][config]["slower_than_" + configs[0]] = round(
                rows[phase][config]["seconds_per_step"] / first, 1
            )
    arguments = sys.argv[1:] if argv is None else argv
    record = {
        "command": "python -m canfvc_codec.lab.train_speed " + " ".join(arguments),
        "crop": options.crop,
        "batch": options.batch,
        "threads": options.threads,
        "torch": torch.__version__,
        "phases": rows,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
