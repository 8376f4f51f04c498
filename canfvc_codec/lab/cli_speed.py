"""Encode and decode seconds per frame through the command line, several models in one run.

    python -m canfvc_codec.lab.cli_speed CLIP --models small.pt,lite --lambda 1024 --threads 1 \\
        --out bench/results/cli_speed.json

Each model encodes ``CLIP`` with ``canfvc encode`` and decodes the stream with ``canfvc decode``
(one process each, as a user runs them, model loading included); the wall time of each process
is divided by the number of frames. The models take turns, ``--repeats`` rounds of them, and each
keeps its fastest round: on a machine that also runs other work, the load weighs on every model
alike and the best round is the closest to an idle machine. Load averages are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def canfvc(*args: str) -> tuple[float, str]:
    """Run ``canfvc ARGS``: (wall seconds, stdout); a failure ends the tool with one line."""
    command = [sys.executable, "-m", "canfvc_codec", *args]
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        sys.exit(f"cli_speed: {' '.join(command)} failed: {done.stderr.strip()}")
    return seconds, done.stdout


def fastest(runs: list[dict]) -> dict:
    """One model's rounds as one record: the fastest encode and decode, the rounds kept."""
    best = dict(runs[0])
    for step in ("encode", "decode"):
        key = f"{step}_s_per_frame"
        best[key] = min(run[key] for run in runs)
    best["rounds"] = [
        {k: run[k] for k in ("encode_s_per_frame", "decode_s_per_frame", "load_average_after")}
        for run in runs
    ]
    best.pop("load_average_after")
    return best


def measure(clip: Path, model: str, lmbda: int, threads: int, work: Path) -> dict:
    """Encode and decode ``clip`` with ``model``: seconds per frame, bytes and frame types."""
    stream = work / "speed.cvc"
    common = ["--device", "cpu", "--threads", str(threads), "--model", model, "-y", "-q"]
    encode_s, _ = canfvc("encode", str(clip), "-o", str(stream), "--lambda", str(lmbda), *common)
    decode_s, _ = canfvc("decode", str(stream), "-o", os.devnull, *common)
    info = json.loads(canfvc("info", str(stream), "--json")[1])
    frames = info["header"]["frame_count"]
    return {
        "model": model,
        "model_id": info["header"]["model_id"],
        "frames": frames,
        "size": f"{info['header']['width']}x{info['header']['height']}",
        "types": "".join(frame["type"] for frame in info["frames"]),
        "bytes": sum(frame["bytes"] for frame in info["frames"]),
        "encode_s_per_frame": round(encode_s / frames, 3),
        "decode_s_per_frame": round(decode_s / frames, 3),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--models", required=True, help="comma-separated names or paths")
    parser.add_argument("--lambda", dest="lmbda", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of turns")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    models = args.models.split(",")
    rounds: dict[str, list[dict]] = {model: [] for model in models}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for model in models:
                run = measure(args.clip, model, args.lmbda, args.threads, Path(work))
                rounds[model].append(run)
    runs = [fastest(rounds[model]) for model in models]
    first = runs[0]
    for run in runs:  # how many times the first model's time each model takes
        for step in ("encode", "decode"):
            key = f"{step}_s_per_frame"
            run[f"{step}_time_over_first"] = round(run[key] / first[key], 2)
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m canfvc_codec.lab.cli_speed "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "clip": str(args.clip.name),
        "lambda": args.lmbda,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
        "load_average_before": load_before,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
