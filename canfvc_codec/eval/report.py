"""Write an evaluation's results: full JSON, CompressAI-style JSON, CSV, Markdown and RD plots.

Layout under the output folder::

    results.json                     everything, per frame included
    compressai/<codec>.json          {"name", "description", "results": {"bpp": [...], ...}},
                                     the mean over sequences at each rate point
    compressai/<sequence>/<codec>.json   the same for one sequence
    csv/<sequence>.csv               one row per codec and rate point
    csv/<sequence>_frames.csv        one row per codec, rate point and frame
    plots/<sequence>_<metric>.png    RD curves
    summary.md                       the tables
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from canfvc_codec.eval.metrics import QUALITY_KEYS, frame_type_split
from canfvc_codec.eval.refine_setting import RefineSetting
from canfvc_codec.eval.runner import BD_METRICS

PLOT_METRICS = ("psnr-rgb", "ms-ssim-rgb", "psnr-yuv")
METRIC_LABELS = {
    "psnr-rgb": "PSNR-RGB (dB)",
    "ms-ssim-rgb": "MS-SSIM-RGB",
    "psnr-yuv": "PSNR-YUV 6:1:1 (dB)",
    "psnr-y": "PSNR-Y (dB)",
    "psnr-u": "PSNR-U (dB)",
    "psnr-v": "PSNR-V (dB)",
}
POINT_COLUMNS = (
    "codec",
    "param",
    "value",
    "bytes",
    "bpp",
    *QUALITY_KEYS,
    "encode_s_per_frame",
    "decode_s_per_frame",
    "encode_peak_rss_mib",
    "decode_peak_rss_mib",
)
FRAME_COLUMNS = ("codec", "param", "value", "frame", "bytes", "bpp", *QUALITY_KEYS)
PLOT_DPI = 110
PLOT_SIZE_IN = (6.0, 4.2)


def _finite(value):
    """JSON has no NaN/inf: non-finite numbers become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _compressai_record(codec: str, points: list[dict], description: str) -> dict:
    keys = ("bpp", *QUALITY_KEYS, "encode_s_per_frame", "decode_s_per_frame")
    return {
        "name": codec,
        "description": description,
        "results": {key: [p[key] for p in points] for key in keys},
    }


def average_points(sequences: dict, codec: str) -> list[dict] | None:
    """The mean over sequences at each rate point, when every sequence has the same points."""
    curves = [seq["codecs"].get(codec) for seq in sequences.values()]
    if not curves or any(c is None for c in curves):
        return None
    values = [[p["value"] for p in curve] for curve in curves]
    if any(v != values[0] for v in values):
        return None
    averaged = []
    for index, value in enumerate(values[0]):
        row: dict = {"param": curves[0][index]["param"], "value": value}
        for key in ("bpp", *QUALITY_KEYS, "encode_s_per_frame", "decode_s_per_frame"):
            samples = [c[index][key] for c in curves]
            row[key] = (
                float(np.mean(samples))
                if all(s is not None and math.isfinite(s) for s in samples)
                else None
            )
        averaged.append(row)
    return averaged


def _description(results: dict, codec: str) -> str:
    if codec in results.get("anchors", {}):
        return results["anchors"][codec]
    status = results.get("canfvc", {})
    model, refine = status.get("model_id"), str(RefineSetting.from_record(status))
    setting = f", {refine}" if refine else ""
    if "intra_coder" in status:  # recorded when not the default (runner.CanfvcCommand)
        setting += f", {status['intra_coder']} I-frames"
    return f"canfvc (model {model}{setting})" if model else "canfvc"


def write_csvs(results: dict, out_dir: Path) -> None:
    folder = out_dir / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    for name, seq in results["sequences"].items():
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, POINT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for points in seq["codecs"].values():
                writer.writerows(_finite(points))
        with open(folder / f"{name}_frames.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, FRAME_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for points in seq["codecs"].values():
                for point in points:
                    for frame in point["frames"]:
                        row = {
                            "codec": point["codec"],
                            "param": point["param"],
                            "value": point["value"],
                            **frame,
                        }
                        writer.writerow(_finite(row))


def plot_rd(results: dict, out_dir: Path) -> list[Path]:
    """One PNG per sequence and metric (plus the mean over sequences); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, list[dict]]] = {
        name: seq["codecs"] for name, seq in results["sequences"].items()
    }
    if len(curves) > 1:
        mean = {
            codec: average_points(results["sequences"], codec)
            for codec in {c for seq in curves.values() for c in seq}
        }
        curves["average"] = {codec: points for codec, points in mean.items() if points}
    written = []
    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    for name, codecs in curves.items():
        for metric in PLOT_METRICS:
            fig, ax = plt.subplots(figsize=PLOT_SIZE_IN)
            drawn = False
            for codec, points in sorted(codecs.items()):
                pairs = sorted(
                    (p["bpp"], p[metric])
                    for p in points
                    if p[metric] is not None and math.isfinite(p[metric])
                )
                if pairs:
                    ax.plot(*zip(*pairs, strict=True), marker="o", label=codec)
                    drawn = True
            if not drawn:
                plt.close(fig)
                continue
            ax.set_xlabel("bpp")
            ax.set_ylabel(METRIC_LABELS[metric])
            ax.set_title(f"{name} ({results['config']})")
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            path = folder / f"{name}_{metric}.png"
            fig.savefig(path, dpi=PLOT_DPI)
            plt.close(fig)
            written.append(path)
    return written


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _frame_types(point: dict) -> str:
    """``I-frames | I-frame bits | P / I bits`` of a point whose frames carry their type
    (canfvc's), else blank cells (the anchors' rows do not record their types)."""
    frames = point.get("frames") or []
    if not frames or not all("type" in f and "bpp" in f for f in frames):
        return " |  | "
    split = frame_type_split(frames)
    share = "n/a" if split["i_bits_share"] is None else f"{100 * split['i_bits_share']:.0f} %"
    return f"{split['i_frames']} | {share} | {_fmt(split['p_over_i'])}"


def _bd_cell(value) -> str:
    return f"{value:+.1f}%" if isinstance(value, (int, float)) else "n/a"


def bd_table(results: dict) -> list[str]:
    """Markdown rows: BD-rate of each codec against x265, per sequence and average, per metric."""
    names = list(results["sequences"])
    header = ["codec", "metric", *names, "average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reasons = []
    for metric in BD_METRICS:
        for codec, row in results["bd_rate"].get(metric, {}).items():
            cells = [_bd_cell(row[n]) for n in names] + [_bd_cell(row["average"])]
            lines.append("| " + " | ".join([codec, metric, *cells]) + " |")
            reasons += [
                f"{codec} / {metric} / {n}: {row[n]}" for n in names if isinstance(row[n], str)
            ]
    if len(lines) == 2:
        return ["No codec besides x265 has results: no BD-rate to report."]
    if reasons:
        lines += ["", "n/a:", *[f"- {r}" for r in dict.fromkeys(reasons)]]
    return lines


def describe_machine(machine: dict) -> str:
    """One line: CPU, cores, load when measured, OS, torch, GPU."""
    load = machine.get("load_average")
    return (
        f"{machine.get('processor')}, {machine.get('cpu_count', '?')} cores"
        + (f" (load average {load[0]:g} at the start)" if load else "")
        + f", {machine.get('platform')}, torch {machine.get('torch')}, "
        f"GPU: {machine.get('cuda') or 'none'}"
    )


def _run_points(run: dict) -> str:
    """``bikes (bikes.y4m from frame 0): canfvc lambda 256, 512`` for one merged run."""
    parts = []
    for seq_name, codecs in run["points"].items():
        source = run.get("sources", {}).get(seq_name, {})
        where = f"{Path(str(source.get('source'))).name} from frame {source.get('start')}"
        curves = [
            f"{codec} {entry['param']} {', '.join(f'{v:g}' for v in entry['values'])}"
            for codec, entry in codecs.items()
        ]
        parts.append(f"{seq_name} ({where}): {' + '.join(curves)}")
    return "; ".join(parts) or "no points kept (all replaced by later runs)"


def runs_markdown(results: dict) -> list[str]:
    """For a merged report: which run, on which machine, produced which points."""
    lines = [
        "",
        "## Where each point was measured",
        "",
        "The points come from several runs (`python -m canfvc_codec.eval.merge`); "
        "times and memory are only comparable between points of the same machine.",
        "",
    ]
    for run in results["runs"]:
        lines.append(
            f"- `{run['source']}` ({run.get('date')}; {describe_machine(run.get('machine') or {})})"
            f": {_run_points(run)}"
        )
    return lines


def summary_markdown(results: dict) -> str:
    canfvc = results.get("canfvc", {})
    machine = results.get("machine") or {}
    runs = results.get("runs")
    jobs = results.get("canfvc_jobs") or {}
    refine = str(RefineSetting.from_record(canfvc))
    lines = [
        f"# RD evaluation: {results['config']}",
        "",
        f"- date: {results['date']}",
        f"- canfvc: {canfvc.get('status')}"
        + (f", model id {canfvc['model_id']}" if canfvc.get("model_id") else "")
        + (f", encoded with {refine}" if refine else "")
        + (f", {canfvc['intra_coder']} I-frames" if "intra_coder" in canfvc else "")
        + (f" ({canfvc['reason']})" if canfvc.get("reason") else "")
        + (
            f"; {jobs['jobs']} rate points at once, {jobs['threads']} threads each"
            if jobs.get("jobs", 1) > 1
            else ""
        ),
        f"- anchors: {'; '.join(f'{k}: {v}' for k, v in results.get('anchors', {}).items())}",
        f"- ffmpeg: {results.get('ffmpeg')}",
        f"- machine: {describe_machine(machine)}"
        if not runs
        else f"- machines: {len(runs)} merged runs, listed at the end",
        "- bpp from the real file sizes (headers included) over the unpadded pixels; times are the "
        "wall time of the whole command (start-up included) per frame; memory is the peak RSS of "
        "the encoding / decoding process.",
        "",
        "## BD-rate against x265 veryslow (negative: fewer bits for the same quality)",
        "",
        *bd_table(results),
    ]
    for name, seq in results["sequences"].items():
        factor = seq.get("downscale", 1)  # records before down-scaling existed have none
        scaled = f" (the source down-scaled by {factor}, area filter)" if factor > 1 else ""
        lines += [
            "",
            f"## {name}: {seq['width']}x{seq['height']}{scaled}, frames {seq['start']}.."
            f"{seq['start'] + seq['frames'] - 1}, GOP {seq['gop']}",
            "",
            "| codec | rate | bpp | PSNR-RGB | MS-SSIM-RGB | PSNR-YUV | PSNR-Y | I-frames "
            "| I-frame bits | P / I bits | enc s/frame | dec s/frame | enc peak MiB "
            "| dec peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for codec, points in seq["codecs"].items():
            for p in points:
                lines.append(
                    f"| {codec} | {p['param']} {p['value']:g} | {_fmt(p['bpp'], 4)} "
                    f"| {_fmt(p['psnr-rgb'])} | {_fmt(p['ms-ssim-rgb'], 4)} "
                    f"| {_fmt(p['psnr-yuv'])} "
                    f"| {_fmt(p['psnr-y'])} | {_frame_types(p)} "
                    f"| {_fmt(p['encode_s_per_frame'], 3)} "
                    f"| {_fmt(p['decode_s_per_frame'], 3)} | {_fmt(p['encode_peak_rss_mib'], 0)} "
                    f"| {_fmt(p['decode_peak_rss_mib'], 0)} |"
                )
        for codec, reason in seq.get("skipped", {}).items():
            lines.append(f"\n{codec} skipped: {reason}")
    if runs:
        lines += runs_markdown(results)
    return "\n".join(lines) + "\n"


def write_report(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write every output file; returns the main paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _dump(out_dir / "results.json", results)
    sequences = results["sequences"]
    codecs = list(dict.fromkeys(c for seq in sequences.values() for c in seq["codecs"]))
    for codec in codecs:
        description = _description(results, codec)
        for name, seq in sequences.items():
            if codec in seq["codecs"]:
                _dump(
                    out_dir / "compressai" / name / f"{codec}.json",
                    _compressai_record(codec, seq["codecs"][codec], description),
                )
        averaged = average_points(sequences, codec)
        if averaged:
            _dump(
                out_dir / "compressai" / f"{codec}.json",
                _compressai_record(codec, averaged, description),
            )
    write_csvs(results, out_dir)
    plot_rd(results, out_dir)
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(results), encoding="utf-8")
    return {"results": out_dir / "results.json", "summary": summary}
