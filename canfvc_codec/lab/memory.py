"""Memory benchmark: peak memory of decoding per frame size, and memory over a long encode.

    python -m canfvc_codec.lab.memory --out bench/results/memory.json \\
        [--decode-sizes 480x272,960x544,1920x1080] [--decode-model random-lite] \\
        [--growth-frames 300] [--growth-size 176x144] [--growth-model random-tiny]

Decoding is measured through the command line, as a user runs it: the peak resident memory of
``canfvc decode`` (the child process's own ``ru_maxrss``) for a few frames (I, first P, later P,
which use every network) of real video at each size. The long encode runs in a child process that
samples its resident memory as the frames go by; a codec whose memory does not grow with the
length of the input has a flat curve after the first GOP.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from canfvc_codec.datasets import extract_clip
from canfvc_codec.eval.process import BYTES_PER_MIB, run_measured

DECODE_SIZES = ((480, 272), (960, 544), (1920, 1080))
DECODE_MODEL = "random-lite"  # untrained weights use exactly the memory trained ones do
DECODE_FRAMES = 3  # I, first P (hyperprior motion), P (conditional motion, extrapolation)
DECODE_LIMIT_MIB = 4096  # the bar: a 1080p decode on a CPU in under 4 GB
GROWTH_FRAMES = 300
GROWTH_SIZE = (176, 144)
GROWTH_MODEL = "random-tiny"
GROWTH_EVERY = 10  # frames between memory samples
GOP = 32
LAMBDA = 1024.0
CLIP = "bikes.mp4"
CLIP_START = 186  # development frames (shared/DATA.md); longer inputs loop the clip
TIMEOUT_S = 6 * 3600
# `make bench` (whose speed benchmark already measures the 1080p decode's peak memory): the
# smallest decode size, and with --quick a shorter encode.
BENCH = {"decode_sizes": ((480, 272),)}
QUICK = {"decode_sizes": ((480, 272),), "growth_frames": 100}
WORKER_MODULE = "canfvc_codec.lab.memory"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def make_clip(path: Path, width: int, height: int, frames: int) -> None:
    """``frames`` real frames scaled to ``width``x``height`` as Y4M, the clip looped if needed."""
    extract_clip(CLIP, path, start=CLIP_START, frames=frames, size=(width, height), loop=True)


def _canfvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "canfvc_codec", *args]


def _env() -> dict:
    # Passive OpenMP waiting: a busy machine otherwise makes the children crawl (no effect on RSS).
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def decode_peak(width: int, height: int, model: str, work: Path, frames: int) -> dict:
    """Encode ``frames`` frames at the size, then measure ``canfvc decode`` on them."""
    clip, stream, decoded = work / "clip.y4m", work / "clip.cvc", work / "decoded.yuv"
    make_clip(clip, width, height, frames)
    encode = run_measured(
        _canfvc(
            "encode",
            str(clip),
            "-o",
            str(stream),
            "--model",
            model,
            "--gop",
            str(GOP),
            "--lambda",
            str(LAMBDA),
            "--no-adaptive-intra",  # I, P, P: untrained weights would choose I-frames only
            "--device",
            "cpu",
            "-q",
            "-y",
        ),
        env=_env(),
        timeout_s=TIMEOUT_S,
    )
    row: dict = {"size": f"{width}x{height}", "frames": frames, "model": model}
    if not encode.ok:
        return {**row, "error": f"encode failed: {encode.error_line()}"}
    decode = run_measured(
        _canfvc("decode", str(stream), "-o", str(decoded), "--device", "cpu", "-q", "-y"),
        env=_env(),
        timeout_s=TIMEOUT_S,
    )
    if not decode.ok:
        return {**row, "error": f"decode failed: {decode.error_line()}"}
    for path in (clip, stream, decoded):
        path.unlink(missing_ok=True)
    return {
        **row,
        "decode_peak_rss_mib": round(decode.peak_rss_mib, 1),
        "decode_s": round(decode.wall_s, 1),
        "encode_peak_rss_mib": round(encode.peak_rss_mib, 1),
        "encode_s": round(encode.wall_s, 1),
    }


# ---------------------------------------------------------------------------------------------
# Traced decode peak: the same decoder on shapes only (meta tensors), with live bytes counted


class LiveBytes:
    """Counts the bytes of the tensors alive under a dispatch mode, and their peak.

    A tensor counts from the op that makes it until Python drops it (storages shared by views
    count once). A convolution also counts, while it runs, the unfolded input (im2col) that
    PyTorch's float64 CPU kernels build: that is where decoding peaks.
    """

    def __init__(self) -> None:
        self.live = self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage -> [bytes, tensors using it]
        self._tensors: set[int] = set()

    def _release(self, storage: int, tensor: int) -> None:
        self._tensors.discard(tensor)
        entry = self._storages[storage]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[storage]

    def track(self, tensor) -> None:
        import weakref

        if id(tensor) in self._tensors:
            return  # an in-place op handed back a tensor already counted
        self._tensors.add(id(tensor))
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._storages:
            self._storages[key][1] += 1
        else:
            self._storages[key] = [storage.nbytes(), 1]
            self.live += storage.nbytes()
        weakref.finalize(tensor, self._release, key, id(tensor))

    @staticmethod
    def unfolded_bytes(args) -> int:
        x, weight, transposed = args[0], args[1], args[6]
        kh, kw = weight.shape[-2:]
        per_pixel = kh * kw * x.element_size() * x.shape[0]
        if transposed:
            return weight.shape[1] * per_pixel * x.shape[-2] * x.shape[-1]
        (sh, sw), (ph, pw) = args[3], args[4]
        out_h = (x.shape[-2] + 2 * ph - kh) // sh + 1
        out_w = (x.shape[-1] + 2 * pw - kw) // sw + 1
        return x.shape[1] * per_pixel * out_h * out_w


def traced_decode_peak(model: str, width: int, height: int) -> dict:
    """Peak bytes of tensors while decoding I, P, P at the size, traced on meta tensors.

    The entropy decoders are replaced by zeros of the right shape (they need real bytes, and
    hold little memory); everything else is the real decoder, stripes included.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from canfvc_codec.codec import Decoder
    from canfvc_codec.entropy.factorized import FactorizedPrior
    from canfvc_codec.entropy.gaussian import GaussianConditional
    from canfvc_codec.numerics import DECODER_DTYPE, Numerics
    from canfvc_codec.rates import Rates
    from canfvc_codec.weights import load_model

    counter = LiveBytes()
    convolution = torch.ops.aten.convolution.default

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            transient = LiveBytes.unfolded_bytes(args) if func is convolution else 0
            out = func(*args, **(kwargs or {}))
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    counter.track(tensor)
            counter.peak = max(counter.peak, counter.live + transient)
            return out

    network, _ = load_model(model, "cpu")
    weights = sum(p.numel() for p in network.parameters()) * DECODER_DTYPE.itemsize
    meta = torch.device("meta")
    saved = FactorizedPrior.decompress, GaussianConditional.decompress
    FactorizedPrior.decompress = lambda self, data, shape: torch.zeros(shape, device=meta)
    GaussianConditional.decompress = lambda self, data, scales, means=None: torch.zeros_like(scales)
    try:
        rates = Rates.uniform(LAMBDA)
        decoder = Decoder(network, rates, width, height, meta, Numerics(DECODER_DTYPE))
        with Mode(), torch.no_grad():
            for frame_type, streams in (("I", 2), ("P", 4), ("P", 4)):
                decoder.decode(frame_type, [b""] * streams)
    finally:
        FactorizedPrior.decompress, GaussianConditional.decompress = saved
    return {
        "tensors_peak_mib": counter.peak / BYTES_PER_MIB,
        "weights_mib": weights / BYTES_PER_MIB,
    }


def traced_rows(model: str, sizes, measured: list[dict]) -> list[dict]:
    """Traced peaks per size, plus the process overhead (interpreter, libraries, allocator)
    calibrated on the first measured size: predicted RSS = traced + weights + overhead."""
    rows = [
        {"size": f"{w}x{h}", "model": model, **traced_decode_peak(model, w, h)} for w, h in sizes
    ]
    reference = next((m for m in measured if "decode_peak_rss_mib" in m), None)
    if reference is None:
        return rows
    base = next((r for r in rows if r["size"] == reference["size"]), None)
    if base is None:
        return rows
    overhead = reference["decode_peak_rss_mib"] - base["tensors_peak_mib"] - base["weights_mib"]
    for row in rows:
        row["overhead_mib"] = round(overhead, 1)
        row["predicted_rss_mib"] = round(row["tensors_peak_mib"] + row["weights_mib"] + overhead, 1)
        row["tensors_peak_mib"] = round(row["tensors_peak_mib"], 1)
        row["weights_mib"] = round(row["weights_mib"], 1)
    return rows


# ---------------------------------------------------------------------------------------------
# Memory over a long encode


def resident_mib() -> float:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES / BYTES_PER_MIB
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * (1 if sys.platform == "darwin" else 1024) / BYTES_PER_MIB


def live_tensors() -> tuple[int, float]:
    """(number, MiB of distinct storages) of the torch tensors alive in this interpreter."""
    import gc

    import torch

    storages: dict[int, int] = {}
    count = 0
    for obj in gc.get_objects():
        # type(), not isinstance(): the latter asks lazy modules for __class__ and warns.
        if issubclass(type(obj), torch.Tensor):
            count += 1
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return count, sum(storages.values()) / BYTES_PER_MIB


class SamplingReader:
    """A video reader that records resident memory every ``every`` frames it hands out, and
    with ``tensors=True`` the live tensors too (a leak shows there without the allocator's noise).
    """

    def __init__(self, reader, every: int, tensors: bool = False) -> None:
        self.info = reader.info
        self._reader, self._every, self._tensors = reader, every, tensors
        self.samples: list[tuple[int, float]] = []
        self.tensor_samples: list[tuple[int, int, float]] = []

    def _sample(self, index: int) -> None:
        self.samples.append((index, round(resident_mib(), 2)))
        if self._tensors:
            count, mib = live_tensors()
            self.tensor_samples.append((index, count, round(mib, 3)))

    def __iter__(self) -> Iterator:
        index = -1
        for index, frame in enumerate(self._reader):
            if index % self._every == 0:
                self._sample(index)
            yield frame
        self._sample(index + 1)


def encode_growth_worker(clip: Path, model: str, every: int, stream: Path) -> dict:
    """Encode ``clip`` into ``stream`` (in this process), sampling resident memory."""
    from canfvc_codec.codec import encode_video
    from canfvc_codec.encoder.options import EncodeOptions
    from canfvc_codec.io import open_reader

    # Frame types as the GOP puts them: untrained weights would choose I-frames only.
    options = EncodeOptions(lmbda=LAMBDA, gop=GOP, adaptive_intra=False, model=model, device="cpu")
    with open_reader(str(clip)) as reader, stream.open("wb") as sink:
        sampling = SamplingReader(reader, every, tensors=True)
        summary = encode_video(sampling, sink, options, progress=False)
    return {
        "frames": summary["frames"],
        "samples": sampling.samples,
        "tensor_samples": sampling.tensor_samples,
    }


def growth_figures(samples: list[tuple[int, float]], gop: int = GOP) -> dict:
    """Peak, and the slope of a line fitted to the samples after the first GOP (MiB/100 frames)."""
    frames = np.array([f for f, _ in samples], dtype=np.float64)
    mib = np.array([m for _, m in samples], dtype=np.float64)
    steady = frames >= gop
    slope = 0.0
    if steady.sum() >= 2:
        slope = float(np.polyfit(frames[steady], mib[steady], 1)[0]) * 100
    return {
        "rss_first_gop_mib": float(mib[~steady].max(initial=0.0)),
        "rss_last_mib": float(mib[-1]),
        "rss_max_mib": float(mib.max()),
        "slope_mib_per_100_frames": round(slope, 3),
    }


def encode_growth(
    width: int, height: int, frames: int, model: str, work: Path, every: int = GROWTH_EVERY
) -> dict:
    """Run :func:`encode_growth_worker` in a child process and summarise its samples."""
    clip, report = work / "long.y4m", work / "growth.json"
    make_clip(clip, width, height, frames)
    cmd = [
        sys.executable,
        "-m",
        WORKER_MODULE,
        "--growth-worker",
        str(clip),
        model,
        str(every),
        str(work / "long.cvc"),
        str(report),
    ]
    stats = run_measured(cmd, env=_env(), timeout_s=TIMEOUT_S)
    row = {"size": f"{width}x{height}", "frames": frames, "model": model}
    if not stats.ok:
        return {**row, "error": stats.error_line()}
    result = json.loads(report.read_text())
    tensors = [t for t in result["tensor_samples"] if t[0] >= GOP]
    return {
        **row,
        **growth_figures([tuple(s) for s in result["samples"]]),
        "peak_rss_mib": round(stats.peak_rss_mib, 1),
        # Between frames after the first GOP: (min, max) number and MiB of live tensors.
        "live_tensors_range": [min(t[1] for t in tensors), max(t[1] for t in tensors)],
        "live_tensor_mib_range": [min(t[2] for t in tensors), max(t[2] for t in tensors)],
        "samples": result["samples"],
    }


def run(
    out_path: Path,
    *,
    decode_sizes=DECODE_SIZES,
    decode_model: str = DECODE_MODEL,
    growth_frames: int = GROWTH_FRAMES,
    growth_size=GROWTH_SIZE,
    growth_model: str = GROWTH_MODEL,
) -> dict:
    """Both measurements, written to ``out_path`` (JSON) as they complete."""
    record: dict = {"decode_limit_mib": DECODE_LIMIT_MIB, "decode": [], "encode_growth": None}

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(record, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="canfvc-memory-") as tmp:
        work = Path(tmp)
        if growth_frames:
            width, height = growth_size
            record["encode_growth"] = encode_growth(
                width, height, growth_frames, growth_model, work
            )
            save()
        for width, height in decode_sizes:
            row = decode_peak(width, height, decode_model, work, DECODE_FRAMES)
            if "decode_peak_rss_mib" in row:
                row["under_limit"] = row["decode_peak_rss_mib"] < DECODE_LIMIT_MIB
            record["decode"].append(row)
            save()
    # Every size traced on shapes (minutes of CPU less than decoding 1080p in float64), with the
    # process overhead calibrated on the smallest measured decode.
    traced_sizes = tuple(dict.fromkeys([*decode_sizes, *DECODE_SIZES]))
    record["traced_decode"] = traced_rows(decode_model, traced_sizes, record["decode"])
    save()
    growth = record["encode_growth"] or {}
    summary = {k: v for k, v in growth.items() if k != "samples"}
    return {**record, "encode_growth": summary or None}


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s)  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--growth-worker":
        clip, model, every, stream, report = args[1:6]
        result = encode_growth_worker(Path(clip), model, int(every), Path(stream))
        Path(report).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}", description=__doc__)
    parser.add_argument("--out", default="bench/results/memory.json")
    parser.add_argument("--decode-sizes", default=",".join(f"{w}x{h}" for w, h in DECODE_SIZES))
    parser.add_argument("--decode-model", default=DECODE_MODEL)
    parser.add_argument("--growth-frames", type=int, default=GROWTH_FRAMES)
    parser.add_argument("--growth-size", default="x".join(map(str, GROWTH_SIZE)))
    parser.add_argument("--growth-model", default=GROWTH_MODEL)
    options = parser.parse_args(args)
    record = run(
        Path(options.out),
        decode_sizes=_sizes(options.decode_sizes),
        decode_model=options.decode_model,
        growth_frames=options.growth_frames,
        growth_size=_sizes(options.growth_size)[0],
        growth_model=options.growth_model,
    )
    print(json.dumps({k: v for k, v in record.items() if k != "encode_growth"}, indent=2))


if __name__ == "__main__":
    main()
