"""The measured half of a model card, written from estimate records.

    python -m canfvc_codec.lab.card --card models/canfvc-lite.json \\
        bench/results/estimate/<model id>/dev_bikes.json \\
        bench/results/estimate/<model id>/dev_bigbuckbunny.json \\
        [--real bench/results/real/<run>/ ...]

Replaces the card's ``rd_points`` with one point per sequence and λ of the records
(:mod:`canfvc_codec.lab.estimate`, merged per λ with ``--merge``): rate, quality, and the split
between I- and P-frames that shows what conditional coding saves; and the per-sequence figures of
``bd_rate_vs_x265`` and their average, keeping the card's words about the anchor. The records must
be of the card's model. Everything else in the card (data, phases, lineage, notes) is left as it
is.

``--real DIR`` adds the points of real files: ``DIR/results.json`` is a ``canfvc eval`` record,
and the frame types come from its rows or, for records written before the rows held them, from
``DIR/info.json`` (``canfvc info --json`` of the stream). They replace the card's
``rd_points_real_files`` of the same sequence, frames and λ, and keep the others.

``--real-bd DIR`` takes the BD-rates of real files: ``DIR/results.json`` is the real-file runs
merged with the x265 anchors (:mod:`canfvc_codec.eval.merge`), and its BD-rates, per sequence and
averaged, become ``bd_rate_vs_x265["real_files"]``.

``--curve ESTIMATE`` (repeatable) adds estimate records of earlier snapshots of the same training
to the card's ``learning_curve``: one point per model, its training so far (steps, device
minutes, from the record) and its average BD-rates against x265; the card's own estimates give
the last point. It shows whether more training still pays; ``--curve-plot PNG`` draws it
(BD-rate against x265 per metric over training hours).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.eval import bdrate
from canfvc_codec.eval.metrics import frame_type_split
from canfvc_codec.eval.report import PLOT_DPI, PLOT_SIZE_IN
from canfvc_codec.eval.runner import BD_METRICS, CANFVC
from canfvc_codec.lab.estimate import ESTIMATE, read_record, record_intra_choice
from canfvc_codec.train.card import CARD_INDENT

DIGITS = 4  # the card's precision: far below what separates two measurements
RATIO_DIGITS = 3  # of P-frame bits over I-frame bits


def _split(frames: list[dict]) -> dict:
    """The card's frame-type split (:func:`frame_type_split`) at the card's precision."""
    return {
        key: round(value, RATIO_DIGITS if key == "p_over_i" else DIGITS)
        if isinstance(value, float)
        else value
        for key, value in frame_type_split(frames).items()
    }


def _card_point(
    name: str,
    seq: dict,
    point: dict,
    gop: int | None,
    adaptive_intra: bool | None,
    intra_choice: str | None,
    motion_lambda: float | None,
) -> dict:
    """What a card says of every RD point: where, how coded, rate and quality."""
    return {
        "sequence": name,
        "frames": f"{seq['frames']} (dev range from {seq['start']})",
        "gop": seq.get("gop", gop),
        "adaptive_intra": adaptive_intra,
        "intra_choice": intra_choice if adaptive_intra else None,
        "lambda": point["value"],
        "motion_lambda": motion_lambda,
        "bpp": round(point["bpp"], DIGITS),
        "psnr_rgb": round(point["psnr-rgb"], DIGITS),
        "psnr_yuv": round(point["psnr-yuv"], DIGITS),
        "ms_ssim_rgb": round(point["ms-ssim-rgb"], DIGITS),
    }


def rd_points(record: dict, gop: int | None = None) -> list[dict]:
    """The card's ``rd_points`` from one estimate record; ``gop`` stands in for a record's own
    (records written before they stored it)."""
    return [
        _card_point(
            name,
            seq,
            point,
            gop,
            record.get("adaptive_intra"),
            record_intra_choice(record),
            point.get("motion_lambda"),
        )
        | _split(point["frames"])
        for name, seq in record["sequences"].items()
        for point in seq["codecs"].get(ESTIMATE, [])
    ]


def real_points(results: dict, info: dict | None = None) -> list[dict]:
    """The card's points of real files from a ``canfvc eval`` record; ``info`` (``canfvc info
    --json`` of its one stream) gives the frame types where the record's rows lack them."""
    types = [f["type"] for f in info["frames"]] if info else None
    points = []
    for name, seq in results["sequences"].items():
        for point in seq["codecs"].get(CANFVC, []):
            frames = point["frames"]
            if types is not None and not all("type" in f for f in frames):
                if len(types) != len(frames):
                    raise InputError(
                        f"{name}: the stream holds {len(types)} frames, the record {len(frames)}"
                    )
                frames = [f | {"type": t} for f, t in zip(frames, types, strict=True)]
            header = (info or {}).get("header", {})
            # canfvc eval codes with the encoder's defaults: adaptive intra, and the intra choice
            # its record names, read as an estimate record's is.
            choice = record_intra_choice(results.get("canfvc", {}))
            entry = _card_point(name, seq, point, None, True, choice, header.get("motion_lambda"))
            if all("type" in f for f in frames):
                entry |= _split(frames)
            entry["encode_s_per_frame"] = round(point["encode_s_per_frame"], 1)
            entry["decode_s_per_frame"] = round(point["decode_s_per_frame"], 1)
            points.append(entry)
    return points


def _point_key(point: dict) -> tuple:
    return point["sequence"], point["frames"], point["lambda"]


class RealRun(NamedTuple):
    """A ``canfvc eval`` record and, maybe, ``canfvc info --json`` of its stream."""

    results: dict
    info: dict | None = None

    @property
    def model_id(self) -> str | None:
        return self.results.get("canfvc", {}).get("model_id")


def read_real_run(folder: Path) -> RealRun:
    """The run in ``folder``: ``results.json``, and ``info.json`` where there is one."""
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        info_path = folder / "info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else None
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: cannot read the run ({exc})") from None
    if not isinstance(results, dict) or not isinstance(results.get("sequences"), dict):
        raise InputError(f"{folder}/results.json is not a canfvc eval record")
    return RealRun(results, info)


def bd_rates(record: dict, label: str = ESTIMATE) -> dict[str, dict[str, float | str]]:
    """{metric: {"<sequence>_<N>_frames": BD-rate against x265}} of the ``label`` points of one
    record: an estimate, or real files merged with the anchors (``label`` canfvc). Sequences
    without such points are left out."""
    table: dict[str, dict[str, float | str]] = {}
    for metric in BD_METRICS:
        row = record.get("bd_rate", {}).get(metric, {}).get(label, {})
        for name, seq in record["sequences"].items():
            if name in row and seq.get("codecs", {}).get(label):
                table.setdefault(metric, {})[f"{name}_{seq['frames']}_frames"] = row[name]
    return table


def _add_averages(table: dict[str, dict[str, float | str]]) -> None:
    """Give every metric of more than one sequence the average of their BD-rates."""
    for row in table.values():
        if len(row) > 1:
            row["average"] = bdrate.average([_bd_value(value) for value in row.values()]).to_json()


def _described(record: dict, label: str) -> str:
    """Which frames of which sequences the ``label`` points of ``record`` cover."""
    return ", ".join(
        f"{name} {seq['frames']} dev frames from {seq['start']}"
        for name, seq in record["sequences"].items()
        if seq.get("codecs", {}).get(label)
    )


def _bd_value(value: float | str) -> bdrate.BDRate:
    """A record's BD-rate back from its JSON form (a number, or "n/a (reason)")."""
    return bdrate.BDRate(value) if isinstance(value, int | float) else bdrate.BDRate(None, value)


SECONDS_PER_MINUTE = 60.0


def intra_lambda_factor(record: dict) -> float:
    """The I-frames' λ over λ an estimate record was made with; records of before the intra λ
    coded I-frames at λ."""
    return float(record.get("intra_lambda_factor", 1.0))


def learning_curve(records: Sequence[dict]) -> list[dict]:
    """One point per model and encoder among estimate ``records``, in training order: its
    training (steps, device minutes), the I-frames' λ factor of the encoder it was estimated with,
    and the average over sequences of its BD-rates against x265 per metric. Points of different
    factors measure the encoder as well as the training: compare each factor's points alone."""
    by_model: dict[tuple[str, float], list[dict]] = {}
    for record in records:
        if "training" not in record:
            raise InputError(
                f"the estimate of model {record.get('model_id')} does not say how long its "
                "model had trained (estimate it again)"
            )
        key = (record["model_id"], intra_lambda_factor(record))
        by_model.setdefault(key, []).append(record)
    points = []
    for (model_id, factor), group in by_model.items():
        table: dict[str, dict[str, float | str]] = {}
        for record in group:
            for metric, row in bd_rates(record).items():
                table.setdefault(metric, {}).update(row)
        _add_averages(table)
        training = group[0]["training"]
        points.append(
            {
                "model_id": model_id,
                "steps": training["steps"],
                "device_minutes": round(training["device_seconds"] / SECONDS_PER_MINUTE, 1),
                "intra_lambda_factor": factor,
                "sequences": sorted({name for r in group for name in r["sequences"]}),
                "bd_rate_vs_x265": {
                    metric: row.get("average", next(iter(row.values())))
                    for metric, row in table.items()
                },
            }
        )
    return sorted(points, key=lambda point: (point["intra_lambda_factor"], point["steps"]))


MINUTES_PER_HOUR = 60.0
# One marker and line style per encoder (I-frames' λ factor) in the learning-curve plot.
PLOT_MARKERS = ("o", "s", "^")
PLOT_LINES = ("-", "--", ":")


def plot_learning_curve(points: Sequence[dict], path: Path, title: str) -> None:
    """Draw ``points`` (:func:`learning_curve`): average BD-rate against x265 per metric over
    training hours, so a glance says whether the curve still falls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=PLOT_SIZE_IN)
    factors = sorted({point.get("intra_lambda_factor", 1.0) for point in points})
    for number, factor in enumerate(factors):
        chosen = [p for p in points if p.get("intra_lambda_factor", 1.0) == factor]
        encoder = "" if factor == 1.0 else f", I-frames at {factor:g}λ"
        for colour, metric in enumerate(BD_METRICS):
            pairs = [
                (point["device_minutes"] / MINUTES_PER_HOUR, point["bd_rate_vs_x265"][metric])
                for point in chosen
                if isinstance(point["bd_rate_vs_x265"].get(metric), int | float)
            ]
            if pairs:
                ax.plot(
                    *zip(*pairs, strict=True),
                    marker=PLOT_MARKERS[number % len(PLOT_MARKERS)],
                    linestyle=PLOT_LINES[number % len(PLOT_LINES)],
                    color=f"C{colour}",
                    label=metric.upper() + encoder,
                )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("training hours (device time)")
    ax.set_ylabel("BD-rate against x265 veryslow (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def update_card(
    card: dict,
    records: list[dict],
    gop: int | None = None,
    real_runs: Sequence[RealRun] = (),
    real_bd: RealRun | None = None,
    curve: Sequence[dict] = (),
) -> dict:
    """``card`` with its measured RD points and BD-rates taken from ``records``, the points of
    ``real_runs`` in place of its real-file points of the same sequence, frames and λ, and the
    BD-rates of ``real_bd`` (real files merged with the anchors) as its real-file BD-rates."""
    measured = [("estimate", r.get("model_id")) for r in records]
    measured += [("real-file run", run.model_id) for run in real_runs]
    measured += [("merged real-file run", real_bd.model_id)] if real_bd else []
    for what, model_id in measured:
        if model_id != card.get("model_id"):
            raise InputError(
                f"the {what} is of model {model_id}, the card of model {card.get('model_id')}"
            )
    updated = dict(card)
    updated["rd_points"] = [point for record in records for point in rd_points(record, gop)]
    bd = dict(card.get("bd_rate_vs_x265", {}))
    for metric in BD_METRICS:
        bd[metric] = {}
    for record in records:
        for metric, row in bd_rates(record).items():
            bd[metric].update(row)
    _add_averages({metric: bd[metric] for metric in BD_METRICS})
    bd["canfvc_points"] = (
        "estimated (rd_points): "
        + ", ".join(_described(record, ESTIMATE) for record in records)
        + "; x265 scored on the same frames"
    )
    if real_bd:
        real_table = bd_rates(real_bd.results, CANFVC)
        if not real_table:
            raise InputError("the merged real-file run has no BD-rates of canfvc against x265")
        _add_averages(real_table)
        bd["real_files"] = {
            "canfvc_points": "real files (rd_points_real_files): "
            + _described(real_bd.results, CANFVC)
            + "; x265 scored on the same frames",
            **real_table,
        }
    updated["bd_rate_vs_x265"] = bd
    if curve:
        updated["learning_curve"] = learning_curve([*curve, *records])
    try:
        real = [point for run in real_runs for point in real_points(run.results, run.info)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"a real-file run lacks what a canfvc eval record holds ({exc!r})"
        ) from None
    if real:
        fresh = {_point_key(point): point for point in real}
        updated["rd_points_real_files"] = [
            fresh.pop(_point_key(point), point) for point in card.get("rd_points_real_files", [])
        ] + list(fresh.values())
    return updated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.lab.card", description=__doc__)
    parser.add_argument("--card", type=Path, required=True, help="the model card to update")
    parser.add_argument("estimates", type=Path, nargs="+", help="estimate records of its model")
    parser.add_argument(
        "--gop", type=int, help="the intra period of records that do not store theirs"
    )
    parser.add_argument(
        "--real",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a canfvc eval run of the card's model (results.json, maybe info.json)",
    )
    parser.add_argument(
        "--real-bd",
        type=Path,
        metavar="DIR",
        help="real-file runs of the card's model merged with the x265 anchors (results.json)",
    )
    parser.add_argument(
        "--curve",
        type=Path,
        action="append",
        default=[],
        metavar="ESTIMATE",
        help="an estimate record of an earlier snapshot of the same training (learning curve)",
    )
    parser.add_argument(
        "--curve-plot",
        type=Path,
        metavar="PNG",
        help="draw the card's learning curve into this image",
    )
    options = parser.parse_args(argv)
    try:
        card = json.loads(options.card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"canfvc: error: cannot read {options.card}: {exc}")
    try:
        records = [read_record(path) for path in options.estimates]
        real_runs = [read_real_run(folder) for folder in options.real]
        real_bd = read_real_run(options.real_bd) if options.real_bd else None
        curve = [read_record(path) for path in options.curve]
        updated = update_card(card, records, options.gop, real_runs, real_bd, curve)
    except CanfvcError as exc:
        sys.exit(f"canfvc: error: {exc}")
    options.card.write_text(json.dumps(updated, indent=CARD_INDENT, ensure_ascii=False) + "\n")
    if options.curve_plot and updated.get("learning_curve"):
        title = f"{updated.get('name', 'model')}: dev-set estimate"
        plot_learning_curve(updated["learning_curve"], options.curve_plot, title)
    for point in updated["rd_points"]:
        print(
            f"{point['sequence']} λ {point['lambda']:g}: {point['bpp']} bpp, "
            f"PSNR-RGB {point['psnr_rgb']} dB, P/I {point['p_over_i']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
