"""Platform-difference harness: encode under the default numerics, decode under other ones.

    python -m canfvc_codec.lab.determinism --frames 96 --size 128x96 --dtype float64 float32 \\
        --out bench/results/determinism.json
    python -m canfvc_codec.lab.determinism --encode-device cuda --decode-device cpu \\
        --paths default --dtype float64 --out bench/results/determinism_cuda_cpu.json
    python -m canfvc_codec.lab.determinism --intra-coder hevc --gop 8 --dtype float64 \\
        --out bench/results/determinism_hevc.json

A stream is encoded in this process (on the default numeric path, PyTorch's defaults), then
decoded in a fresh interpreter under each other
:class:`~canfvc_codec.numerics.NumericPath` in turn (oneDNN off, channels-last, one thread), each of
which changes float results by about one unit in the last place, as another CPU, BLAS or GPU
would. The decoder here does not stop at a reconstruction-CRC mismatch (the real decoder does):
it goes on so that the harness can say how far the output drifts. Figures per path: decoding
failures, CRC mismatches, fraction of samples identical to / within one code value of the
encoder's reconstruction, the largest difference, and how many σ changed table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from canfvc_codec.bitstream import CvcReader
from canfvc_codec.codec import Decoder, encode_video, frame_crc
from canfvc_codec.datasets import extract_clip
from canfvc_codec.defaults import DEFAULT_LAMBDA
from canfvc_codec.device import resolve_device
from canfvc_codec.encoder.gop import Encoder
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.entropy.gaussian import GaussianConditional
from canfvc_codec.entropy.scale_table import BOUNDARIES, scale_indexes
from canfvc_codec.errors import CanfvcError
from canfvc_codec.hevc import ANFIC, HEVC, INTRA_CODERS, HevcIntra
from canfvc_codec.io import VideoInfo, open_reader, open_writer
from canfvc_codec.io.color import yuv_to_rgb
from canfvc_codec.networks.video import VideoModel
from canfvc_codec.numerics import (
    DEFAULT_PATH,
    NUMERIC_PATHS,
    NumericPath,
    Numerics,
    get_numeric_path,
    numeric_path,
    resolve_dtype,
)
from canfvc_codec.rates import Rates
from canfvc_codec.weights import load_model, load_model_by_id

DEFAULT_MODEL = "random-tiny"
DEFAULT_GOP = 32
DEFAULT_CLIP = "bikes.mp4"
# bikes.mp4 frames 0-185 are the training range: the only real range long enough for 96 frames.
DEFAULT_START = 0
WORKER_TIMEOUT_S = 1800
WORKER_MODULE = "canfvc_codec.lab.determinism"
OTHER_PATHS = tuple(name for name in NUMERIC_PATHS if name != DEFAULT_PATH)
# One latent coder call per ANFIC I-frame, none per HEVC one, two per P-frame (motion, inter):
# how σ arrays map to frames.
SCALE_CALLS = {ANFIC: {"I": 1, "P": 2}, HEVC: {"I": 0, "P": 2}}
DEVICES = ("cpu", "cuda")


# ---------------------------------------------------------------------------------------------
# Diagnostics: how close the σ values come to a table boundary.

_LOG_BOUNDARIES = np.log(BOUNDARIES)
# Spacing of the scale table in the log domain: ln(256 / 0.11) / 63 ≈ 0.123.
LOG_LEVEL_STEP = float(_LOG_BOUNDARIES[1] - _LOG_BOUNDARIES[0])


def boundary_distance(scales: np.ndarray) -> np.ndarray:
    """Distance of each σ to the nearest table boundary in the log domain (≈ relative distance).

    A numerical path that moves σ by a relative δ can change its table only where this is below δ.
    Non-positive σ (always table 0) get ``inf``.
    """
    values = np.asarray(scales, dtype=np.float64).ravel()
    out = np.full(values.shape, np.inf)
    positive = values > 0
    logs = np.log(values[positive])
    right = np.searchsorted(_LOG_BOUNDARIES, logs).clip(1, len(_LOG_BOUNDARIES) - 1)
    out[positive] = np.minimum(
        np.abs(logs - _LOG_BOUNDARIES[right - 1]), np.abs(logs - _LOG_BOUNDARIES[right])
    )
    return out


def flip_probability(relative_error: float, values: int) -> float:
    """Expected number of table flips among ``values`` σ that a path moves by ``relative_error``.

    A σ flips when it lies within the error of a boundary; for σ spread smoothly over the log
    scale that happens with probability ``2 * error / step`` per value (a first-order estimate).
    """
    return 2.0 * relative_error / LOG_LEVEL_STEP * values


@dataclass
class PathResult:
    """What decoding one stream under one numerical path gave."""

    path: str
    dtype: str
    frames: int  # frames in the stream
    decoded: int  # frames decoded before a failure (all of them when none)
    failure: str | None  # the error that stopped decoding, if any
    crc_mismatches: int
    first_mismatch: int | None
    identical_fraction: float
    within_one_fraction: float
    max_diff: int
    index_flips: int  # σ whose table index differs from the encoder's
    first_flip_frame: int | None
    sigma_max_rel_dev: float  # largest relative σ difference before the first flip


# ---------------------------------------------------------------------------------------------
# σ capture (diagnostics only: which tables the coder chose)


@contextmanager
def capture_scales() -> Iterator[list[np.ndarray]]:
    """Record the σ of every latent the Gaussian coder decodes (encoder and decoder alike)."""
    captured: list[np.ndarray] = []
    original = GaussianConditional.decompress

    def recording(self, data, scales, means=None):  # type: ignore[no-untyped-def]
        captured.append(scales.detach().cpu().double().numpy().ravel().copy())
        return original(self, data, scales, means)

    GaussianConditional.decompress = recording  # type: ignore[method-assign]
    try:
        yield captured
    finally:
        GaussianConditional.decompress = original  # type: ignore[method-assign]


def _save_scales(path: Path, scales: list[np.ndarray]) -> None:
    np.savez(path, *scales)


def _load_scales(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{k}"] for k in range(len(data.files))]


def _frame_of_call(types: list[str], intra_coder: str) -> list[int]:
    return [k for k, t in enumerate(types) for _ in range(SCALE_CALLS[intra_coder][t])]


def compare_scales(
    reference: list[np.ndarray],
    other: list[np.ndarray],
    types: list[str],
    intra_coder: str = ANFIC,
) -> dict:
    """Table flips of ``other`` against ``reference`` and the σ drift before the first flip."""
    frames = _frame_of_call(types, intra_coder)
    flips, first, deviation = 0, None, 0.0
    for call, (a, b) in enumerate(zip(reference, other, strict=False)):
        if a.shape != b.shape:
            break
        changed = int(
            np.count_nonzero(
                scale_indexes(torch.from_numpy(a)) != scale_indexes(torch.from_numpy(b))
            )
        )
        if changed and first is None:
            first = frames[call]
        if first is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(a - b) / np.abs(a)
            deviation = max(deviation, float(np.nanmax(rel, initial=0.0)))
        flips += changed
    return {"index_flips": flips, "first_flip_frame": first, "sigma_max_rel_dev": deviation}


# ---------------------------------------------------------------------------------------------
# Worker: decode one stream under each of several paths, in a process of its own


def _outputs(work: Path, path: str, dtype: str) -> tuple[Path, Path]:
    """Where the worker leaves the decoded video and the σ of one path."""
    return work / f"{path}-{dtype}.yuv", work / f"{path}-{dtype}.npz"


def _decode_one(
    stream: Path, model: VideoModel, dtype: str, path: NumericPath, work: Path, device: str
) -> dict:
    """Decode ``stream`` under ``path`` on ``device`` into raw YUV, going on past CRC
    mismatches."""
    output, scales_out = _outputs(work, path.name, dtype)
    mismatches: list[int] = []
    failure, decoded = None, 0
    with stream.open("rb") as source, numeric_path(path), capture_scales() as scales:
        reader = CvcReader(source)
        h = reader.header
        info = VideoInfo(
            h.width, h.height, h.fps_num, h.fps_den, h.bit_depth, h.matrix, h.full_range, None
        )
        decoder = Decoder.for_stream(
            copy.deepcopy(model),
            h,
            resolve_device(device),
            Numerics(resolve_dtype(dtype), path),
            HevcIntra(info) if h.intra_coder == HEVC else None,
        )
        with open_writer(str(output), info, overwrite=True) as writer:
            try:
                for index, record in enumerate(reader):
                    rgb = decoder.decode(record.frame_type, record.streams)
                    frame = decoder.output_planes(rgb, info)
                    if frame_crc(frame) != record.recon_crc:
                        mismatches.append(index)
                    writer.write(frame)
                    decoded += 1
            except (CanfvcError, ValueError, RuntimeError, IndexError, OverflowError) as exc:
                failure = f"frame {decoded}: {exc}"
    _save_scales(scales_out, scales)
    return {"decoded": decoded, "failure": failure, "mismatches": mismatches}


def decode_under_paths(
    stream: Path, dtype: str, work: Path, paths: list[str], device: str = "cpu"
) -> dict:
    """The worker's job: one report per path (the model is loaded once)."""
    with stream.open("rb") as source:
        model_id = CvcReader(source).header.model_id
    model, _ = load_model_by_id(model_id, "cpu")
    return {
        name: _decode_one(stream, model, dtype, get_numeric_path(name), work, device)
        for name in paths
    }


# ---------------------------------------------------------------------------------------------
# Harness


def make_clip(
    path: Path,
    width: int,
    height: int,
    frames: int,
    clip: str = DEFAULT_CLIP,
    start: int = DEFAULT_START,
) -> None:
    """``frames`` real frames of ``clip`` from ``start``, scaled to ``width``x``height``, as Y4M."""
    extract_clip(clip, path, start=start, frames=frames, size=(width, height))


def _planes(path: Path, info: VideoInfo) -> np.ndarray:
    return np.fromfile(path, dtype=info.dtype)


def compare_planes(reference: np.ndarray, other: np.ndarray) -> dict:
    """Sample statistics of ``other`` against ``reference`` (missing samples count as different)."""
    total = reference.size
    common = min(total, other.size)
    diff = np.abs(reference[:common].astype(np.int64) - other[:common].astype(np.int64))
    return {
        "identical_fraction": float(np.count_nonzero(diff == 0)) / total if total else 1.0,
        "within_one_fraction": float(np.count_nonzero(diff <= 1)) / total if total else 1.0,
        "max_diff": int(diff.max(initial=0)) if common == total else int(np.iinfo(np.int32).max),
    }


def encode_stream(
    source: Path,
    dtype: str,
    work: Path,
    model: str,
    lmbda: float,
    gop: int,
    device: str = "cpu",
    intra_coder: str = ANFIC,
) -> dict:
    """The encoder worker's job: stream, reconstruction and σ under this process's path."""
    stream, recon = work / f"stream-{dtype}.cvc", work / f"recon-{dtype}.yuv"
    # Frame types as the GOP puts them: the longest chains of P-frames (the hardest case), and
    # no rejected intra candidates among the captured σ, which then line up with the decoder's.
    options = EncodeOptions(
        lmbda=lmbda,
        gop=gop,
        adaptive_intra=False,
        model=model,
        device=device,
        numerics=Numerics(resolve_dtype(dtype)),
        intra_coder=intra_coder,
    )
    with capture_scales() as scales, open_reader(str(source)) as reader:
        with stream.open("wb") as sink, open_writer(str(recon), reader.info, overwrite=True) as rec:
            summary = encode_video(reader, sink, options, recon=rec, progress=False)
    _save_scales(work / f"encoder-{dtype}.npz", scales)
    return {
        "types": [f["type"] for f in summary["per_frame"]],
        "bytes": summary["bytes"],
        "bpp": summary["bpp"],
        "threads": torch.get_num_threads(),
    }


def _spawn(job: str, *args: str) -> dict:
    """Run a worker job in a fresh interpreter; its JSON report, or ``{"error": line}``.

    OpenMP's waiting threads spin by default, which on a machine busier than its core count
    slows small convolutions down tenfold; passive waiting changes no result, only the waiting.
    """
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with tempfile.TemporaryDirectory(prefix="canfvc-worker-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", WORKER_MODULE, job, str(report), *args]
        done = subprocess.run(
            cmd, env=env, capture_output=True, timeout=WORKER_TIMEOUT_S, text=True
        )
        if done.returncode == 0 and report.exists():
            return json.loads(report.read_text())
    tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return {"error": f"{job} worker failed: {tail}"}


def run_harness(
    source: Path,
    work: Path,
    *,
    model: str = DEFAULT_MODEL,
    lmbda: float = DEFAULT_LAMBDA,
    gop: int = DEFAULT_GOP,
    dtypes: tuple[str, ...] = ("float64",),
    paths: tuple[str, ...] = OTHER_PATHS,
    encode_device: str = "cpu",
    decode_device: str = "cpu",
    intra_coder: str = ANFIC,
) -> dict:
    """Encode ``source`` once per numeric type, decode it under each path; results per run.

    The encoder and the decoders run in interpreters of their own, so that nothing the encoder
    computed (or cached) can leak into decoding. The devices make the cross-device runs: encode
    on CUDA and decode on the CPU (path ``default``), or the reverse. ``intra_coder`` codes the
    I-frames (``hevc``: HEVC intra, whose pictures no numeric path may change either).
    """
    for device in (encode_device, decode_device):
        resolve_device(device)  # a missing GPU is one clear error, before any work
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    with open_reader(str(source)) as reader:
        info = reader.info
    for dtype in dtypes:
        encoded = _spawn(
            "--encode",
            str(source),
            dtype,
            str(work),
            model,
            str(lmbda),
            str(gop),
            encode_device,
            intra_coder,
        )
        if "error" in encoded:
            raise RuntimeError(encoded["error"])
        types = encoded["types"]
        reference = _planes(work / f"recon-{dtype}.yuv", info)
        enc_scales = _load_scales(work / f"encoder-{dtype}.npz")
        margins = np.concatenate([boundary_distance(s) for s in enc_scales])
        stream = str(work / f"stream-{dtype}.cvc")
        reports = _spawn("--decode", stream, dtype, str(work), decode_device, *paths)
        for path in paths:
            report = reports.get(path, {"decoded": 0, "failure": reports.get("error")})
            output, scales_path = _outputs(work, path, dtype)
            decoded = _planes(output, info) if output.exists() else np.zeros(0, info.dtype)
            scales = _load_scales(scales_path) if scales_path.exists() else []
            mismatches = report.get("mismatches", [])
            result = PathResult(
                path=path,
                dtype=dtype,
                frames=len(types),
                decoded=report["decoded"],
                failure=report["failure"],
                crc_mismatches=len(mismatches),
                first_mismatch=mismatches[0] if mismatches else None,
                **compare_planes(reference, decoded),
                **compare_scales(enc_scales, scales, types, intra_coder),
            )
            runs.append(asdict(result))
        encode = {k: encoded[k] for k in ("bytes", "bpp", "threads")}
        encode.update(
            frames=len(types),
            sigma_values=int(margins.size),
            min_boundary_distance=float(margins.min(initial=np.inf)),
        )
        runs.append({"dtype": dtype, "encode": encode})
    return {
        "source": str(source),
        "model": model,
        "lambda": lmbda,
        "gop": gop,
        "intra_coder": intra_coder,
        "encode_device": encode_device,
        "decode_device": decode_device,
        "runs": runs,
    }


def time_per_frame(model: str, width: int, height: int, frames: int, dtype: str) -> dict:
    """Seconds per frame of encoding and decoding (in this process), by frame type."""
    network, _ = load_model(model, "cpu")
    with tempfile.TemporaryDirectory(prefix="canfvc-timing-") as tmp:
        clip = Path(tmp) / "clip.y4m"
        make_clip(clip, width, height, frames)
        with open_reader(str(clip)) as reader:
            info = reader.info
            pictures = [yuv_to_rgb(frame, info) for frame in reader]
    numerics = Numerics(resolve_dtype(dtype))
    device = torch.device("cpu")
    rates, schedule = Rates.uniform(DEFAULT_LAMBDA), IntraSchedule(DEFAULT_GOP)
    encoder = Encoder(copy.deepcopy(network), rates, schedule, width, height, device, numerics)
    decoder = Decoder(copy.deepcopy(network), rates, width, height, device, numerics)
    rows = []
    for picture in pictures:
        start = time.perf_counter()
        frame_type, streams, _ = encoder.encode(picture)
        middle = time.perf_counter()
        decoder.decode(frame_type, streams)
        rows.append((frame_type, middle - start, time.perf_counter() - middle))
    p_rows = [r for r in rows[2:] if r[0] == "P"] or [r for r in rows if r[0] == "P"]
    return {
        "model": model,
        "size": f"{width}x{height}",
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "encode_s": {"I": rows[0][1], "P": float(np.mean([r[1] for r in p_rows]))},
        "decode_s": {"I": rows[0][2], "P": float(np.mean([r[2] for r in p_rows]))},
    }


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m canfvc_codec.lab.determinism", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--size", default="128x96", help="WxH of the test clip")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--lambda", dest="lmbda", type=float, default=DEFAULT_LAMBDA)
    parser.add_argument("--gop", type=int, default=DEFAULT_GOP)
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    parser.add_argument("--paths", nargs="+", default=list(OTHER_PATHS))
    parser.add_argument("--encode-device", choices=DEVICES, default="cpu")
    parser.add_argument("--decode-device", choices=DEVICES, default="cpu")
    parser.add_argument("--intra-coder", choices=INTRA_CODERS, default=ANFIC)
    parser.add_argument("--out", help="JSON file for the results (default: stdout)")
    parser.add_argument(
        "--timing",
        nargs="+",
        metavar="MODEL",
        help="instead: seconds per frame of these models in each --dtype at --size",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--encode", "--decode"):
        job, report, source, dtype, work, *rest = args
        if job == "--encode":
            model, lmbda, gop, device, intra_coder = rest
            result = encode_stream(
                Path(source), dtype, Path(work), model, float(lmbda), int(gop), device, intra_coder
            )
        else:
            device, *paths = rest
            result = decode_under_paths(Path(source), dtype, Path(work), paths, device)
        Path(report).write_text(json.dumps(result))
        return
    if args and args[0] == "--time":
        _, report, model, size, frames, dtype = args
        width, height = (int(v) for v in size.split("x"))
        Path(report).write_text(
            json.dumps(time_per_frame(model, width, height, int(frames), dtype))
        )
        return
    options = _parse_args(args)
    width, height = (int(v) for v in options.size.lower().split("x"))
    if options.timing:
        rows = [
            _spawn("--time", model, options.size, str(options.frames), dtype)
            for model in options.timing
            for dtype in options.dtype
        ]
        text = json.dumps({"timing": rows}, indent=2)
        if options.out:
            Path(options.out).write_text(text + "\n")
        print(text)
        return
    for device in (options.encode_device, options.decode_device):
        try:
            resolve_device(device)
        except CanfvcError as exc:
            sys.exit(f"canfvc: error: {exc}")
    with tempfile.TemporaryDirectory(prefix="canfvc-determinism-") as tmp:
        source = Path(tmp) / "clip.y4m"
        make_clip(source, width, height, options.frames)
        results = run_harness(
            source,
            Path(tmp),
            model=options.model,
            lmbda=options.lmbda,
            gop=options.gop,
            dtypes=tuple(options.dtype),
            paths=tuple(options.paths),
            encode_device=options.encode_device,
            decode_device=options.decode_device,
            intra_coder=options.intra_coder,
        )
    results["command"] = "python -m canfvc_codec.lab.determinism " + " ".join(args)
    text = json.dumps(results, indent=2)
    if options.out:
        Path(options.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
