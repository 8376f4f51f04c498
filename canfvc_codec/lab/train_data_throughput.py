"""Throughput of the training data pipeline alone, to size ``canfvc train --workers`` for a GPU.

    python -m canfvc_codec.lab.train_data_throughput --workers 0,1,2 --batches 12 \\
        --out bench/results/train_data_throughput.json

For each data set, request and number of workers, a fresh batch stream
(:class:`canfvc_codec.train.batches.BatchStream`) draws one batch that is not timed (the workers
start, the first files are read) and then ``--batches`` timed ones; no model runs. Data sets:

* ``builtin``: the project's clips and photographs in memory (``canfvc train``'s default);
* ``vimeo90k``: a Vimeo-90k-shaped folder written by this tool (448x256 PNG septuplets cut from
  the training clips, so that PNG decoding costs what it costs on natural pictures), read from
  disk as the real data set would be.

Requests: 7-frame sequences (the fine-tuning phase), 5-frame (IPPPP), single frames (intra) and
flow pairs (the flow phase, half of them stills with their exact flow). A GPU step consumes
``batch`` samples; the samples per second of one worker say how many workers keep it fed. The
machine's load counts: the figures are only as good as the CPU was free. Drawn in the process
itself (``workers`` 0, one torch thread), the samples per second of CPU time say what one core
draws whatever else runs beside it, which is what one worker draws on a free core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from canfvc_codec.datasets import TRAIN_RANGES
from canfvc_codec.train.batches import BatchStream, Request
from canfvc_codec.train.data import cached_frames
from canfvc_codec.train.datasets import VIMEO_FRAMES, training_data
from canfvc_codec.train.trainer import FLOW_STILL_FRACTION, LONGEST_SEQUENCE

VIMEO_SIZE = (256, 448)  # height, width of every Vimeo-90k frame
REQUESTS = {
    "sequences7": Request(7),
    "sequences5": Request(5),
    "intra1": Request(1),
    "flow_pairs": Request(2, flow_still_fraction=FLOW_STILL_FRACTION),
}


def write_vimeo_like(root: Path, sequences: int) -> Path:
    """A Vimeo-90k septuplet folder of ``sequences`` sequences cut from the training clips."""
    import cv2

    frames = cached_frames(TRAIN_RANGES[0])  # bikes, 640x272
    height, width = VIMEO_SIZE
    rng = np.random.default_rng(0)
    entries = []
    for k in range(sequences):
        start = int(rng.integers(len(frames) - len(VIMEO_FRAMES)))
        top = int(rng.integers(frames.shape[1] - height + 1))
        left = int(rng.integers(frames.shape[2] - width + 1))
        entry = f"{k // 1000 + 1:05d}/{k % 1000 + 1:04d}"
        folder = root / "sequences" / entry
        folder.mkdir(parents=True)
        for t, name in enumerate(VIMEO_FRAMES):
            rgb = frames[start + t, top : top + height, left : left + width]
            cv2.imwrite(str(folder / name), np.ascontiguousarray(rgb[:, :, ::-1]))
        entries.append(entry)
    (root / "sep_trainlist.txt").write_text("\n".join(entries) + "\n")
    return root


def measure(stream: BatchStream, request: Request, batches: int) -> tuple[float, float]:
    """Samples per second of wall time and of this process's CPU time over ``batches`` batches,
    after one untimed batch."""
    stream.next(request)
    tic, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        stream.next(request)
    samples = batches * stream.batch
    return samples / (time.perf_counter() - tic), samples / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="builtin,vimeo90k")
    parser.add_argument("--requests", default=",".join(REQUESTS))
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--sequences", type=int, default=64, help="of the Vimeo-like folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in-process")
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in options.datasets.split(","):
            root = None
            if dataset == "vimeo90k":
                root = write_vimeo_like(Path(scratch), options.sequences)
            data = training_data(dataset, options.crop, LONGEST_SEQUENCE, data_root=root)
            for name in options.requests.split(","):
                for workers in (int(w) for w in options.workers.split(",")):
                    stream = BatchStream(data, options.batch, seed=0, workers=workers)
                    rate, cpu_rate = measure(stream, REQUESTS[name], options.batches)
                    stream.close()
                    row = {
                        "dataset": dataset,
                        "request": name,
                        "workers": workers,
                        "samples_per_second": round(rate, 2),
                        "samples_per_second_per_worker": round(rate / max(workers, 1), 2),
                    }
                    if workers == 0:  # drawn on one thread of this process: what a core does
                        row["samples_per_cpu_second"] = round(cpu_rate, 2)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "what": "samples per second of the training data pipeline alone (no model), "
        "workers=0: drawn in the training process",
        "crop": options.crop,
        "batch": options.batch,
        "batches_timed": options.batches,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
