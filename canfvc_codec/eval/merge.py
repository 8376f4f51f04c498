"""Merge the results of several evaluation runs into one report.

    python -m canfvc_codec.eval.merge --out bench/results/rd RUN1/results.json RUN2/results.json ...

Runs need not share a machine: the anchors may be coded on a CPU and canfvc on a GPU, one rate per
run, and extra anchor QPs added later. The merge takes the union of the rate points of each codec
on each sequence (a point is identified by codec, parameter and value; a later file replaces an
earlier one's point), recomputes the BD-rates and writes every report file as ``canfvc eval``
does. Which run (and so which machine) produced which points is kept under ``runs`` and listed in
``summary.md``: the times and memory of points from different machines are not comparable.

Sequences are matched by name, and must describe the same pictures (size, frame count, GOP, bit
depth, frame rate): the file they were read from may differ, e.g. a pre-extracted Y4M of the same
range of a clip.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.eval.refine_setting import RefineSetting
from canfvc_codec.eval.report import write_report
from canfvc_codec.eval.runner import CANFVC, RESULTS_VERSION, compute_bd_rates
from canfvc_codec.hevc import DEFAULT_INTRA_CODER

# What must agree for two runs to have coded the same pictures.
SEQUENCE_KEYS = ("width", "height", "frames", "gop", "bit_depth", "fps")


def load_results(path: Path) -> dict:
    """One run's ``results.json``; InputError when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sequences"), dict):
        raise InputError(f"{path} is not an evaluation results.json (no 'sequences')")
    return data


def _point_key(point: dict) -> tuple[str, float]:
    return point["param"], float(point["value"])


def _merge_sequence(merged: dict, seq: dict, name: str, label: str) -> None:
    """Check that ``seq`` codes the same pictures as ``merged`` (the first run's record)."""
    for key in SEQUENCE_KEYS:
        if str(merged.get(key)) != str(seq.get(key)):
            raise InputError(
                f"{label}: sequence {name!r} has {key} {seq.get(key)}, an earlier run has "
                f"{merged.get(key)}: not the same pictures"
            )


def _canfvc_status(runs: Sequence[dict], sequences: dict) -> dict:
    """ok with the model id when any run has canfvc points; one model only."""
    model_ids = sorted(
        {r["canfvc"]["model_id"] for r in runs if r.get("canfvc", {}).get("model_id")}
    )
    if len(model_ids) > 1:
        raise InputError(
            f"the runs used different canfvc models ({', '.join(model_ids)}): "
            "their points cannot share a curve"
        )
    refines = {
        RefineSetting.from_record(r["canfvc"]) for r in runs if r.get("canfvc", {}).get("model_id")
    }
    if len(refines) > 1:
        settings = sorted(str(setting) or "no refinement" for setting in refines)
        raise InputError(
            f"the runs refined the latents with different steps ({', '.join(settings)}): "
            "their points cannot share a curve"
        )
    coded = [r["canfvc"] for r in runs if r.get("canfvc", {}).get("model_id")]
    intra_coders = sorted({status.get("intra_coder", DEFAULT_INTRA_CODER) for status in coded})
    if len(intra_coders) > 1:
        raise InputError(
            f"the runs coded their I-frames with different intra coders "
            f"({', '.join(intra_coders)}): their points cannot share a curve"
        )
    if not any(CANFVC in seq["codecs"] for seq in sequences.values()):
        reasons = [r.get("canfvc", {}).get("reason") for r in runs]
        return {"status": "skipped", "reason": next((r for r in reasons if r), "no results")}
    status: dict = {"status": "ok"}
    if model_ids:
        status["model_id"] = model_ids[0]
    if refines:
        (refine,) = refines
        status.update(refine.record())
    if intra_coders and intra_coders[0] != DEFAULT_INTRA_CODER:
        status["intra_coder"] = intra_coders[0]
    return status


def merge_results(
    runs: Sequence[dict], labels: Sequence[str] | None = None, *, name: str | None = None
) -> dict:
    """One results record from several runs (see the module docstring).

    ``labels`` name the runs in the provenance list (their paths, usually); ``name`` is the
    merged config's name, by default the first run's.
    """
    if not runs:
        raise InputError("nothing to merge: no results given")
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise ValueError("one label per run")

    sequences: dict = {}
    # (sequence, codec, param, value) -> index of the run whose point is kept
    origin: dict[tuple, int] = {}
    skipped: dict[str, dict[str, str]] = {}
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        for seq_name, seq in run["sequences"].items():
            if seq_name not in sequences:
                sequences[seq_name] = {
                    k: v for k, v in seq.items() if k not in ("codecs", "skipped")
                }
                sequences[seq_name]["codecs"] = {}
            else:
                _merge_sequence(sequences[seq_name], seq, seq_name, label)
            codecs = sequences[seq_name]["codecs"]
            for codec, points in seq["codecs"].items():
                by_key = {_point_key(p): p for p in codecs.get(codec, [])}
                for point in points:
                    by_key[_point_key(point)] = point
                    origin[(seq_name, codec, *_point_key(point))] = index
                codecs[codec] = [by_key[k] for k in sorted(by_key)]
            skipped.setdefault(seq_name, {}).update(seq.get("skipped", {}))
    for seq_name, seq in sequences.items():
        # A codec skipped in one run but coded in another is not skipped.
        seq["skipped"] = {c: r for c, r in skipped[seq_name].items() if c not in seq["codecs"]}

    provenance = []
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        points: dict = {}
        for (seq_name, codec, param, value), owner in origin.items():
            if owner == index:
                entry = points.setdefault(seq_name, {}).setdefault(codec, {"param": param})
                entry.setdefault("values", []).append(value)
        for codecs in points.values():
            for entry in codecs.values():
                entry["values"].sort()
        provenance.append(
            {
                "source": label,
                "config": run.get("config"),
                "date": run.get("date"),
                "machine": run.get("machine"),
                # The pictures may have been read from another file of the same frames.
                "sources": {
                    n: {"source": seq.get("source"), "start": seq.get("start")}
                    for n, seq in run["sequences"].items()
                },
                "points": points,
            }
        )

    anchors: dict = {}
    for run in runs:
        anchors.update(run.get("anchors", {}))
    ffmpeg = list(dict.fromkeys(r["ffmpeg"] for r in runs if r.get("ffmpeg")))
    names = list(dict.fromkeys(c for seq in sequences.values() for c in seq["codecs"]))
    return {
        "version": RESULTS_VERSION,
        "config": name or runs[0].get("config", "merged"),
        "config_path": runs[0].get("config_path"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": None,  # several: see "runs"
        "runs": provenance,
        "ffmpeg": "; ".join(ffmpeg) or None,
        "anchors": anchors,
        "canfvc": _canfvc_status(runs, sequences),
        "sequences": sequences,
        "bd_rate": compute_bd_rates(sequences, names),
    }


def merge_files(paths: Sequence[Path], out_dir: Path, *, name: str | None = None) -> dict:
    """Load, merge and write the full report under ``out_dir``; returns the merged record."""
    runs = [load_results(Path(p)) for p in paths]
    results = merge_results(runs, [str(p) for p in paths], name=name)
    write_report(results, Path(out_dir))
    return results


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the merged results.json, CSV, plots and summary.md.",
)
@click.option("--name", default=None, help="Config name in the report [default: the first run's].")
def main(results: tuple[str, ...], out: str, name: str | None) -> None:
    """Merge RESULTS (results.json files of several runs, later ones winning) into one report."""
    try:
        merged = merge_files([Path(p) for p in results], Path(out), name=name)
    except CanfvcError as exc:
        click.echo(f"canfvc eval merge: {exc}", err=True)
        sys.exit(exc.exit_code)
    points = sum(len(p) for seq in merged["sequences"].values() for p in seq["codecs"].values())
    click.echo(
        f"{len(results)} runs merged: {len(merged['sequences'])} sequences, {points} rate points; "
        f"summary in {Path(out) / 'summary.md'}",
        err=True,
    )


if __name__ == "__main__":
    main()
