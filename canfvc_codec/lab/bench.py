"""``make bench``: entropy-coder benchmark, encode/decode speed, and the dev RD evaluation.

    python -m canfvc_codec.lab.bench --out bench/results [--quick] [--skip-rd] [--skip-speed]

Everything lands under ``--out``, with a ``README.md`` that summarises it. Speed is measured through
the real command line, as a user runs it: each size is coded twice, with one frame and with N
frames, so that the per-frame speed can be given both with and without the fixed start-up cost
(interpreter, model loading) — ``(N - 1) / (t_N - t_1)`` is the steady speed of P-frames.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from canfvc_codec.errors import CanfvcError
from canfvc_codec.eval import anchors
from canfvc_codec.eval.command import evaluate
from canfvc_codec.eval.config import parse_size
from canfvc_codec.eval.report import bd_table, describe_machine
from canfvc_codec.eval.runner import CanfvcCommand, CanfvcUnavailable, machine_info
from canfvc_codec.lab import entropy, memory

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = REPO_ROOT / "bench" / "configs" / "dev.json"
SPEED_SIZES = ((480, 270), (1920, 1080))
SPEED_CLIP = "bikes.mp4"
SPEED_START = 186  # dev frames, never trained on
SPEED_FRAMES = 4
QUICK_SPEED_FRAMES = 2
# Stands in for the default model when no trained weights exist (speed does not depend on them).
UNTRAINED_SPEED_MODEL = "random-lite"
SPEED_LAMBDA = 1024.0
SPEED_GOP = 32
QUICK_RD_FRAMES = 8
# One command may not take longer than this (a 1080p CPU encode of a few frames fits easily).
SPEED_TIMEOUT_S = 3600
RD_PLOT_METRICS = ("psnr-rgb", "ms-ssim-rgb", "psnr-yuv")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Entropy coder


def entropy_benchmark(out_dir: Path) -> dict:
    """The range coder's throughput and table-building figures (:mod:`canfvc_codec.lab.entropy`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = entropy.run(out_dir)
    return {"status": "ok", "result": result if isinstance(result, (dict, list)) else str(result)}


# ---------------------------------------------------------------------------------------------
# Speed


def _make_clip(path: Path, width: int, height: int, frames: int, ffmpeg: str) -> None:
    """``frames`` dev frames scaled to ``width``x``height``, as Y4M (self-describing for canfvc)."""
    from canfvc_codec.datasets import extract_clip

    try:
        extract_clip(
            SPEED_CLIP, path, start=SPEED_START, frames=frames, size=(width, height),
            scaler="bicubic",
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["ffmpeg failed"]
        raise CanfvcError(f"cannot prepare the {width}x{height} speed clip: {detail[0]}") from None


def _devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _time_codec(canfvc: CanfvcCommand, source: Path, work: Path) -> tuple[float, ...]:
    """(encode s, decode s, encode peak MiB, decode peak MiB) of one clip through the CLI."""
    stream, decoded = work / "speed.cvc", work / "speed.yuv"
    stream.unlink(missing_ok=True)
    decoded.unlink(missing_ok=True)
    enc = canfvc.encode(source, stream, SPEED_LAMBDA, SPEED_GOP)
    dec = canfvc.decode(stream, decoded)
    decoded.unlink(missing_ok=True)
    return enc.wall_s, dec.wall_s, enc.peak_rss_mib, dec.peak_rss_mib


def _speed_row(canfvc: CanfvcCommand, clips: dict[int, Path], work: Path) -> dict:
    """Timings of the N-frame clip, and the steady speed when a 1-frame clip is there too."""
    frames = max(clips)
    timings = {n: _time_codec(canfvc, clip, work) for n, clip in clips.items()}
    enc, dec, enc_mib, dec_mib = timings[frames]
    row = {
        "encode_fps": frames / enc,
        "decode_fps": frames / dec,
        "encode_peak_rss_mib": enc_mib,
        "decode_peak_rss_mib": dec_mib,
        "encode_fps_steady": None,
        "decode_fps_steady": None,
    }
    if 1 in clips and frames > 1:
        enc1, dec1 = timings[1][:2]
        row["encode_fps_steady"] = (frames - 1) / (enc - enc1) if enc > enc1 else None
        row["decode_fps_steady"] = (frames - 1) / (dec - dec1) if dec > dec1 else None
    return row


def speed_benchmark(
    frames: int,
    model: str | None,
    sizes: tuple[tuple[int, int], ...],
    steady: bool,
    python: str = sys.executable,
) -> dict:
    """Frames/s of ``canfvc encode`` and ``decode`` at each size and device.

    Speed does not depend on the weights' values, so without a trained model (``model`` None and
    the default one missing) the untrained ``random-lite`` stands in, and the report says so.
    """
    canfvc = CanfvcCommand(python, model, timeout_s=SPEED_TIMEOUT_S)
    try:
        canfvc.check()
    except CanfvcUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    ffmpeg = anchors.find_ffmpeg()
    record: dict = {"status": "ok", "lambda": SPEED_LAMBDA, "model": model, "rows": []}
    with tempfile.TemporaryDirectory(prefix="canfvc-speed-") as tmp:
        work = Path(tmp)
        for width, height in sizes:
            counts = (1, frames) if steady and frames > 1 else (frames,)
            clips = {n: work / f"{width}x{height}_{n}.y4m" for n in counts}
            for n, clip in clips.items():
                _make_clip(clip, width, height, n, ffmpeg)
            for device in _devices():
                canfvc.device = device
                _log(f"speed: {width}x{height} on {device}")
                row: dict = {"size": f"{width}x{height}", "device": device, "frames": frames}
                try:
                    row.update(_speed_row(canfvc, clips, work))
                except CanfvcUnavailable as exc:
                    if canfvc.model is not None:
                        row["error"] = str(exc)
                        record["rows"].append(row)
                        continue
                    canfvc.model = record["model"] = UNTRAINED_SPEED_MODEL
                    record["note"] = (
                        f"the default model did not run ({exc}); timings use the untrained "
                        f"{UNTRAINED_SPEED_MODEL}, same networks, so the same speed"
                    )
                    try:
                        row.update(_speed_row(canfvc, clips, work))
                    except CanfvcUnavailable as again:
                        row["error"] = str(again)
                record["rows"].append(row)
    return record


# ---------------------------------------------------------------------------------------------
# README


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _speed_lines(speed: dict) -> list[str]:
    if speed.get("status") != "ok":
        return [f"Skipped: {speed.get('reason')}"]
    lines = [
        f"canfvc through its command line, model {speed.get('model') or 'default'}, "
        f"λ = {speed['lambda']:g}; *fps* counts the whole command (start-up and model loading "
        "included), *steady* is `(N-1)/(t_N - t_1)` from a 1-frame and an N-frame run "
        "(n/a with --quick).",
        "",
        *([f"Note: {speed['note']}.", ""] if speed.get("note") else []),
        "| size | device | frames | encode fps | decode fps | encode fps steady "
        "| decode fps steady | enc peak MiB | dec peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in speed["rows"]:
        if "error" in row:
            lines.append(
                f"| {row['size']} | {row['device']} | {row['frames']} | failed: "
                f"{row['error']} | | | | | |"
            )
            continue
        lines.append(
            f"| {row['size']} | {row['device']} | {row['frames']} | {_fmt(row['encode_fps'], 3)} "
            f"| {_fmt(row['decode_fps'], 3)} | {_fmt(row['encode_fps_steady'], 3)} "
            f"| {_fmt(row['decode_fps_steady'], 3)} | {_fmt(row['encode_peak_rss_mib'], 0)} "
            f"| {_fmt(row['decode_peak_rss_mib'], 0)} |"
        )
    return lines


def _entropy_lines(entropy: dict) -> list[str]:
    if entropy.get("status") != "ok":
        return [f"Skipped: {entropy.get('reason')}"]
    result = entropy["result"]
    if isinstance(result, dict):
        return [f"- {key}: {value}" for key, value in result.items()] + [
            "",
            "Details in `entropy/`.",
        ]
    return ["```", json.dumps(result, indent=1)[:4000], "```"]


def _rd_lines(rd: dict | None, out_dir: Path) -> list[str]:
    if rd is None:
        return ["Skipped (--skip-rd)."]
    canfvc = rd.get("canfvc", {})
    lines = [
        f"Config `{rd.get('config')}`; canfvc: {canfvc.get('status')}"
        + (f", model id `{canfvc['model_id']}`" if canfvc.get("model_id") else "")
        + (f" — {canfvc['reason']}" if canfvc.get("reason") else "")
        + ".",
        "",
    ]
    for name, seq in rd["sequences"].items():
        lines.append(
            f"- {name}: {seq['width']}x{seq['height']}, frames {seq['start']}.."
            f"{seq['start'] + seq['frames'] - 1}, GOP {seq['gop']}"
        )
    lines += [
        "",
        "BD-rate against x265 veryslow (negative: fewer bits for the same quality):",
        "",
        *bd_table(rd),
        "",
    ]
    plots = out_dir / "rd" / "plots"
    names = ["average"] if (plots / "average_psnr-rgb.png").is_file() else list(rd["sequences"])
    for name in names:
        for metric in RD_PLOT_METRICS:
            image = plots / f"{name}_{metric}.png"
            if image.is_file():
                lines.append(f"![{name} {metric}](rd/plots/{image.name})")
    lines += [
        "",
        "Per-sequence tables: [rd/summary.md](rd/summary.md); raw numbers: "
        "`rd/results.json`, `rd/csv/`, CompressAI-style curves: `rd/compressai/`.",
    ]
    return lines


def write_readme(out_dir: Path, record: dict) -> Path:
    rd = record.get("rd")
    model_id = (rd or {}).get("canfvc", {}).get("model_id") or "n/a (no canfvc results)"
    machine = record.get("machine") or (rd or {}).get("machine") or {}
    lines = [
        "# canfvc benchmarks",
        "",
        f"- date: {record['date']}",
        f"- model id: {model_id}",
        f"- machine: {describe_machine(machine)}",
        f"- command: `{record['command']}`",
        "",
        "## Rate-distortion on the development clips",
        "",
        *_rd_lines(rd, out_dir),
        "",
        "## Speed",
        "",
        *_speed_lines(record["speed"]),
        "",
        "## Entropy coder",
        "",
        *_entropy_lines(record["entropy"]),
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@click.command()
@click.option("--out", default="bench/results", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--quick",
    is_flag=True,
    help=f"Fewer frames: {QUICK_SPEED_FRAMES} for speed, {QUICK_RD_FRAMES} per RD sequence.",
)
@click.option("--skip-rd", is_flag=True, help="No RD evaluation.")
@click.option("--skip-speed", is_flag=True, help="No speed benchmark.")
@click.option("--skip-entropy", is_flag=True, help="No entropy-coder benchmark.")
@click.option(
    "--config",
    "config_path",
    default=str(DEV_CONFIG),
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Sequences of the RD evaluation.",
)
@click.option("--anchors", "anchor_names", default="x265,x264", show_default=True)
@click.option("--model", default=None, help="canfvc model [default: canfvc's].")
@click.option(
    "--speed-sizes",
    default=",".join(f"{w}x{h}" for w, h in SPEED_SIZES),
    show_default=True,
    help="Comma-separated frame sizes of the speed benchmark.",
)
@click.option(
    "--rd-frames", type=int, default=None, help="At most this many frames per RD sequence."
)
def main(
    out: str,
    quick: bool,
    skip_rd: bool,
    skip_speed: bool,
    skip_entropy: bool,
    config_path: str,
    anchor_names: str,
    model: str | None,
    speed_sizes: str,
    rd_frames: int | None,
) -> None:
    """Run the benchmarks and write bench/results/README.md."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m canfvc_codec.lab.bench " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
    }
    try:
        _log("entropy benchmark")
        record["entropy"] = (
            {"status": "skipped", "reason": "--skip-entropy"}
            if skip_entropy
            else entropy_benchmark(out_dir / "entropy")
        )
        _log("memory benchmark (canfvc_codec.lab.memory)")
        preset = memory.QUICK if quick else memory.BENCH
        record["memory"] = memory.run(out_dir / "memory" / "memory.json", **preset)
        record["speed"] = (
            {"status": "skipped", "reason": "--skip-speed"}
            if skip_speed
            else speed_benchmark(
                QUICK_SPEED_FRAMES if quick else SPEED_FRAMES,
                model,
                tuple(parse_size(s, "--speed-sizes") for s in speed_sizes.split(",") if s.strip()),
                steady=not quick,
            )
        )
        record["rd"] = None
        if not skip_rd:
            rd_dir = out_dir / "rd"
            shutil.rmtree(rd_dir / "plots", ignore_errors=True)  # no stale plots in the README
            frames = rd_frames if rd_frames is not None else (QUICK_RD_FRAMES if quick else None)
            record["rd"] = evaluate(
                config_path, str(rd_dir), anchor_names=anchor_names, model=model, max_frames=frames
            )
    except CanfvcError as exc:
        click.echo(f"canfvc bench: {exc}", err=True)
        sys.exit(exc.exit_code)
    bench_json = {k: v for k, v in record.items() if k != "rd"}
    (out_dir / "bench.json").write_text(json.dumps(bench_json, indent=2, default=str) + "\n")
    readme = write_readme(out_dir, record)
    click.echo(f"benchmarks written to {readme}", err=True)


if __name__ == "__main__":
    main()
