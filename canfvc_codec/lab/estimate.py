"""Rate-distortion estimated from the model's forward pass, for following training on a CPU.

    python -m canfvc_codec.lab.estimate --config bench/configs/dev.json \\
        --model models/canfvc-lite.pt --lambdas 256,512,1024,2048 \\
        --anchors bench/results/anchors/dev_qp22-37/results.json \\
        --anchors bench/results/anchors/dev_qp37-51/results.json \\
        --anchors bench/results/anchors/dev_vtest_qp22-37/results.json \\
        --anchors bench/results/anchors/dev_vtest_qp37-51/results.json --out estimate.json
    python -m canfvc_codec.lab.estimate --merge l256.json l1024.json --out estimate.json

``canfvc eval`` measures real files through the command line; on a 2-core CPU the lite model
needs about 80 s per 640x272 frame that way (float64 decoder path, entropy coding). This
runs the networks once per frame in float32, in eval mode (latents rounded exactly as the coder
rounds them), with the same GOP structure and the same decoded references: the rate is the
entropy models' estimate (within about 2 % of the coded size, tests/test_codec.py) and the
reconstruction is the coder's up to float32 rounding. Quality is scored exactly as ``canfvc eval``
scores a decoded file. Results are labelled "canfvc-estimate" and never mixed with measured points.

One process per λ uses every core of a small machine; ``--merge`` joins their records (same model,
encoder settings and frames) into one, with the BD-rates recomputed over all the points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from canfvc_codec.defaults import ANCHOR_LAMBDAS, DEFAULT_MODEL, INTRA_LAMBDA_FACTOR
from canfvc_codec.encoder import motion
from canfvc_codec.encoder.gop import frame_cost
from canfvc_codec.encoder.schedule import (
    DEFAULT_INTRA_CHOICE,
    FRAME_CHOICE,
    INTER,
    INTRA,
    INTRA_CHOICES,
    IntraSchedule,
)
from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.eval import anchors
from canfvc_codec.eval.config import SequenceSpec, load_config
from canfvc_codec.eval.metrics import QUALITY_KEYS, frame_metrics, mean_metrics
from canfvc_codec.eval.report import plot_rd
from canfvc_codec.eval.runner import compute_bd_rates
from canfvc_codec.eval.sequence import open_sequence
from canfvc_codec.io import VideoInfo
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from canfvc_codec.networks import FrameOutput, References, VideoModel, to_reference
from canfvc_codec.networks.video import pad_to_multiple
from canfvc_codec.rates import MOTION_LAMBDA_SHARE, Rates, auto_intra_lambda, auto_motion_lambda
from canfvc_codec.threads import thread_count
from canfvc_codec.train.card import training_totals

ESTIMATE = "canfvc-estimate"
DEFAULT_LAMBDAS = ANCHOR_LAMBDAS


def read_sequence(spec: SequenceSpec, max_frames: int | None = None) -> tuple[VideoInfo, list]:
    """The frames of ``spec`` (at most ``max_frames``), read once for every λ."""
    frames = spec.frames if max_frames is None else min(spec.frames, max_frames)
    with open_sequence(spec, frames) as (info, frames_read):
        pictures = list(frames_read)
    if not pictures:
        raise InputError(f"{spec.name}: no frames read")
    return info, pictures


def _estimated_cost(out, *, x: torch.Tensor, lmbda: float, size: tuple[int, int]) -> float:
    return frame_cost(float(out.bits()), x, out.x_hat, lmbda, size)


@torch.no_grad()
def estimate_sequence(
    model: VideoModel,
    info: VideoInfo,
    pictures: list,
    gop: int,
    rates: Rates,
    adaptive_intra: bool = True,
    progress: bool = False,
    intra_choice: str = DEFAULT_INTRA_CHOICE,
    search: motion.FlowEstimator | None = None,
) -> dict:
    """One RD point of ``pictures`` at ``rates``: mean metrics, bpp, and a row per frame;
    ``progress`` shows a bar on stderr. ``search``: the encoder's motion search (None: the
    model's SPyNet).

    Frame types are chosen as the encoder chooses them
    (:class:`~canfvc_codec.encoder.gop.Encoder`), from estimated bits instead of coded ones."""

    def inter(x: torch.Tensor, refs: References) -> FrameOutput:
        flow = None if search is None else search(x, refs.frames[-1])
        return model.forward_inter(x, refs, rates, flow)

    lmbda = rates.lmbda

    pixels = info.width * info.height
    size = (info.height, info.width)
    rows: list[dict] = []
    refs: References | None = None
    schedule = IntraSchedule(gop, adaptive_intra, intra_choice)
    bar = tqdm(pictures, desc=f"λ {lmbda:g}", unit="frame", file=sys.stderr, disable=not progress)
    for index, frame in enumerate(bar):
        x = pad_to_multiple(yuv_to_rgb(frame, info).float()[None])
        frame_type, out = schedule.choose(
            partial(model, x, rates.intra),
            partial(inter, x, refs),
            partial(_estimated_cost, x=x, lmbda=lmbda, size=size),
        )
        x_hat = to_reference(out.x_hat)
        refs = References([x_hat]) if frame_type == INTRA else refs.push(x_hat, out.flow_hat)  # type: ignore[union-attr]
        decoded = rgb_to_yuv(x_hat[0, :, : info.height, : info.width].double(), info)
        bits = {name: float(coder.bits()) for name, coder in out.coders.items()}
        row = {"frame": index, "type": frame_type, "bpp": sum(bits.values()) / pixels}
        row.update({f"bpp-{name}": value / pixels for name, value in bits.items()})
        row.update(frame_metrics(frame, decoded, info))
        rows.append(row)
    point = {"codec": ESTIMATE, "param": "lambda", "value": lmbda, "frames": rows}
    point["motion_lambda"] = rates.motion
    point["intra_lambda"] = rates.intra
    point["bpp"] = sum(r["bpp"] for r in rows) / len(rows)
    point.update(mean_metrics(rows, QUALITY_KEYS))
    for kind in (INTRA, INTER):
        picked = [r["bpp"] for r in rows if r["type"] == kind]
        point[f"bpp-{kind}"] = sum(picked) / len(picked) if picked else None
    return point


def first_frames(point: dict, frames: int) -> dict:
    """An anchor point restricted to its first ``frames`` frames (bpp and means recomputed), so
    that a shortened estimate is compared with the same pictures."""
    rows = point["frames"][:frames]
    if len(rows) == len(point["frames"]):
        return point
    short = {k: v for k, v in point.items() if k not in ("frames", "bytes")}
    short["frames"] = rows
    short["bytes"] = sum(r["bytes"] for r in rows)
    short["bpp"] = sum(r["bpp"] for r in rows) / len(rows)
    short.update(mean_metrics(rows, QUALITY_KEYS))
    return short


def anchor_points(paths: list[Path], frames: int | None = None) -> dict[str, list[dict]]:
    """{sequence: x265 points} from ``canfvc eval`` results files, cut to ``frames`` frames."""
    found: dict[str, list[dict]] = {}
    for path in paths:
        for name, seq in json.loads(path.read_text())["sequences"].items():
            points = seq["codecs"].get(anchors.REFERENCE_ANCHOR, [])
            if frames is not None:
                points = [first_frames(p, frames) for p in points]
            found.setdefault(name, []).extend(points)
    # Runs split over QP ranges share their edge QP: keep one point per QP.
    return {name: list({p["value"]: p for p in points}.values()) for name, points in found.items()}


def run(
    config_path: Path,
    model_name: str,
    lambdas: tuple[float, ...],
    anchor_files: list[Path],
    max_frames: int | None = None,
    log=print,
    sequences_wanted: tuple[str, ...] = (),
    adaptive_intra: bool = True,
    intra_choice: str = DEFAULT_INTRA_CHOICE,
    motion_search: str = motion.DEFAULT_MOTION_SEARCH,
    motion_lambda_share: float = MOTION_LAMBDA_SHARE,
    progress: bool = False,
    intra_lambda_factor: float = INTRA_LAMBDA_FACTOR,
) -> dict:
    from canfvc_codec.weights import load_model_and_card

    config = load_config(config_path, only=sequences_wanted)
    model, model_id, card = load_model_and_card(model_name)
    model.eval()
    search = motion.motion_search(motion_search)
    x265 = anchor_points(anchor_files, max_frames)
    sequences: dict = {}
    for spec in config.sequences:
        info, pictures = read_sequence(spec, max_frames)
        points = []
        for lmbda in lambdas:
            started = time.monotonic()
            trained = model.config.anchor_lambdas
            rates = Rates.resolve(
                lmbda,
                trained,
                motion=auto_motion_lambda(lmbda, trained, motion_lambda_share),
                intra=auto_intra_lambda(lmbda, trained, intra_lambda_factor),
            )
            point = estimate_sequence(
                model,
                info,
                pictures,
                spec.gop,
                rates,
                adaptive_intra,
                progress=progress,
                intra_choice=intra_choice,
                search=search,
            )
            points.append(point)
            p_over_i = (
                f"{point['bpp-P'] / point['bpp-I']:.2f}" if point["bpp-P"] is not None else "-"
            )
            log(
                f"{spec.name} λ {lmbda:g}: {point['bpp']:.4f} bpp, PSNR-RGB "
                f"{point['psnr-rgb']:.2f} dB, PSNR-YUV {point['psnr-yuv']:.2f} dB, "
                f"I {point['bpp-I']:.4f} bpp, P/I {p_over_i} "
                f"({time.monotonic() - started:.0f} s)"
            )
        codecs = {ESTIMATE: points}
        if spec.name in x265:
            codecs[anchors.REFERENCE_ANCHOR] = x265[spec.name]
        frames = len(points[0]["frames"])
        sequences[spec.name] = {
            "start": spec.start,
            "frames": frames,
            "gop": spec.gop,
            "codecs": codecs,
        }
    return {
        "kind": "estimate (forward pass in eval mode, float32; not coded files)",
        "config": config.name,
        "adaptive_intra": adaptive_intra,
        "intra_choice": intra_choice,
        "motion_search": motion_search,
        "motion_lambda_share": motion_lambda_share,
        "intra_lambda_factor": intra_lambda_factor,
        "model_id": model_id.hex(),
        "training": training_totals(card),
        "sequences": sequences,
        "bd_rate": compute_bd_rates(sequences, [ESTIMATE]),
    }


# What the records merged into one must share: the same model and encoder on the same frames.
MERGE_KEYS = (
    "kind",
    "config",
    "adaptive_intra",
    "intra_choice",
    "motion_search",
    "motion_lambda_share",
    "intra_lambda_factor",
    "model_id",
    "training",
)
SEQUENCE_KEYS = ("start", "frames", "gop")


def merge_estimates(records: list[dict]) -> dict:
    """One record from several :func:`run` records of the same model, encoder settings and
    frames, e.g. one per λ: the union of their points (a later record's point replaces an
    earlier one's at the same λ), ordered by λ, with the BD-rates recomputed."""
    if not records:
        raise InputError("nothing to merge")
    first = records[0]
    sequences: dict = {}
    for record in records:
        for key in MERGE_KEYS:
            if record.get(key) != first.get(key):
                raise InputError(
                    f"cannot merge estimates with different {key}: "
                    f"{first.get(key)!r} and {record.get(key)!r}"
                )
        for name, seq in record["sequences"].items():
            shape = {key: seq.get(key) for key in SEQUENCE_KEYS}
            merged = sequences.setdefault(name, shape | {"codecs": {}})
            if any(merged[key] != shape[key] for key in SEQUENCE_KEYS):
                raise InputError(
                    f"cannot merge estimates of different frames of {name}: "
                    + " and ".join(
                        ", ".join(f"{key} {part[key]}" for key in SEQUENCE_KEYS)
                        for part in (merged, shape)
                    )
                )
            for codec, points in seq["codecs"].items():
                by_value = {p["value"]: p for p in merged["codecs"].get(codec, [])}
                by_value.update({p["value"]: p for p in points})
                merged["codecs"][codec] = [by_value[v] for v in sorted(by_value)]
    result = {key: first[key] for key in MERGE_KEYS if key in first}
    result["sequences"] = sequences
    result["bd_rate"] = compute_bd_rates(sequences, [ESTIMATE])
    return result


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("sequences"), dict):
        raise InputError(f"{path} is not an estimate record")
    record["intra_choice"] = record_intra_choice(record)
    return record


def record_intra_choice(record: dict) -> str:
    """The intra choice a record was made with (an estimate record, or the ``canfvc`` entry of a
    ``canfvc eval`` record): records from before the choice was an option name none, and were
    made with the only one there was."""
    return record.get("intra_choice", FRAME_CHOICE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m canfvc_codec.lab.estimate", description=__doc__
    )
    parser.add_argument("--config", type=Path, help="the clips to estimate (see bench/configs)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--lambdas", default=",".join(f"{v:g}" for v in DEFAULT_LAMBDAS))
    parser.add_argument("--anchors", type=Path, action="append", default=[])
    parser.add_argument("--frames", type=int, help="at most this many frames per sequence")
    parser.add_argument("--sequence", action="append", default=[], help="only this one (repeat)")
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch")
    parser.add_argument(
        "--no-adaptive-intra",
        dest="adaptive_intra",
        action="store_false",
        help="I-frames only where the GOP puts them (canfvc encode --no-adaptive-intra)",
    )
    parser.add_argument(
        "--intra-choice",
        choices=INTRA_CHOICES,
        default=DEFAULT_INTRA_CHOICE,
        help="how adaptive intra decides (canfvc encode --intra-choice)",
    )
    parser.add_argument(
        "--motion-search",
        choices=motion.MOTION_SEARCHES,
        default=motion.DEFAULT_MOTION_SEARCH,
        help="the encoder's motion search (canfvc encode --motion-search)",
    )
    parser.add_argument(
        "--motion-lambda-share",
        type=float,
        default=MOTION_LAMBDA_SHARE,
        help="motion coders' λ as a share of λ, as canfvc encode's --motion-lambda auto takes "
        "it (1: the same λ)",
    )
    parser.add_argument(
        "--intra-lambda-factor",
        type=float,
        default=INTRA_LAMBDA_FACTOR,
        help="I-frames' λ as a multiple of λ, as canfvc encode's --intra-lambda auto takes it "
        "(1: the same λ)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="ESTIMATE",
        help="merge these estimate records into --out instead of estimating",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plots", type=Path, help="also write RD plots (PNG) under this folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        lambdas = tuple(float(v) for v in options.lambdas.split(",") if v)
    except ValueError:
        parser.error(f"--lambdas: not a comma-separated list of numbers: {options.lambdas!r}")
    if (options.merge is None) == (options.config is None):
        parser.error("give --config to estimate, or --merge to join estimates (not both)")
    try:
        if options.merge is not None:
            record = merge_estimates([read_record(path) for path in options.merge])
        else:
            record = run(
                options.config,
                options.model,
                lambdas,
                options.anchors,
                options.frames,
                sequences_wanted=tuple(options.sequence),
                adaptive_intra=options.adaptive_intra,
                intra_choice=options.intra_choice,
                motion_search=options.motion_search,
                motion_lambda_share=options.motion_lambda_share,
                progress=not options.quiet,
                intra_lambda_factor=options.intra_lambda_factor,
            )
    except (CanfvcError, OSError) as exc:
        sys.exit(f"canfvc: error: {exc}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=1) + "\n")
    if options.plots:
        plot_rd(record, options.plots)
    for metric, table in record["bd_rate"].items():
        print(f"BD-rate {metric} vs x265: {json.dumps(table[ESTIMATE])}", file=sys.stderr)


if __name__ == "__main__":
    main()
