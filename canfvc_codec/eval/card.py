"""The measured half of a model card, written from estimate records.

    python -m canfvc_codec.eval.card --card models/canfvc-lite.json \\
        bench/results/estimate/<model id>/dev_bikes.json \\
        bench/results/estimate/<model id>/dev_bigbuckbunny.json

Replaces the card's ``rd_points`` with one point per sequence and λ of the records
(:mod:`canfvc_codec.eval.estimate`, merged per λ with ``--merge``): rate, quality, and the split
between I- and P-frames that shows what conditional coding saves; and the per-sequence figures of
``bd_rate_vs_x265`` and their average, keeping the card's words about the anchor. The records must
be of the card's model. Everything else in the card (data, phases, lineage, notes) is left as it
is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.eval import bdrate
from canfvc_codec.eval.estimate import ESTIMATE, read_record
from canfvc_codec.eval.runner import BD_METRICS

DIGITS = 4  # the card's precision: far below what separates two measurements
CARD_INDENT = 2  # as the trainer writes cards


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), DIGITS) if values else None


def frame_type_split(frames: list[dict]) -> dict:
    """How many frames are I-frames, and the mean rate and PSNR-RGB of each type."""
    intra = [f for f in frames if f["type"] == "I"]
    inter = [f for f in frames if f["type"] == "P"]
    split = {
        "i_frames": len(intra),
        "i_bpp": _mean([f["bpp"] for f in intra]),
        "p_bpp": _mean([f["bpp"] for f in inter]),
    }
    split["p_over_i"] = (
        round(split["p_bpp"] / split["i_bpp"], 3) if split["p_bpp"] and split["i_bpp"] else None
    )
    split["i_psnr_rgb"] = _mean([f["psnr-rgb"] for f in intra])
    split["p_psnr_rgb"] = _mean([f["psnr-rgb"] for f in inter])
    split["p_motion_bpp"] = _mean([f["bpp-motion"] for f in inter])
    return split


def rd_points(record: dict, gop: int | None = None) -> list[dict]:
    """The card's ``rd_points`` from one estimate record; ``gop`` stands in for a record's own
    (records written before they stored it)."""
    points = []
    for name, seq in record["sequences"].items():
        for point in seq["codecs"].get(ESTIMATE, []):
            points.append(
                {
                    "sequence": name,
                    "frames": f"{seq['frames']} (dev range from {seq['start']})",
                    "gop": seq.get("gop", gop),
                    "adaptive_intra": record.get("adaptive_intra"),
                    "lambda": point["value"],
                    "motion_lambda": point.get("motion_lambda"),
                    "bpp": round(point["bpp"], DIGITS),
                    "psnr_rgb": round(point["psnr-rgb"], DIGITS),
                    "psnr_yuv": round(point["psnr-yuv"], DIGITS),
                    "ms_ssim_rgb": round(point["ms-ssim-rgb"], DIGITS),
                }
                | frame_type_split(point["frames"])
            )
    return points


def bd_rates(record: dict) -> dict[str, dict[str, float | str]]:
    """{metric: {"<sequence>_<N>_frames": BD-rate against x265}} from one estimate record."""
    table: dict[str, dict[str, float | str]] = {}
    for metric in BD_METRICS:
        row = record.get("bd_rate", {}).get(metric, {}).get(ESTIMATE, {})
        for name, seq in record["sequences"].items():
            if name in row:
                table.setdefault(metric, {})[f"{name}_{seq['frames']}_frames"] = row[name]
    return table


def _bd_value(value: float | str) -> bdrate.BDRate:
    """A record's BD-rate back from its JSON form (a number, or "n/a (reason)")."""
    return bdrate.BDRate(value) if isinstance(value, int | float) else bdrate.BDRate(None, value)


def update_card(card: dict, records: list[dict], gop: int | None = None) -> dict:
    """``card`` with its measured RD points and BD-rates taken from ``records``."""
    for record in records:
        if record.get("model_id") != card.get("model_id"):
            raise InputError(
                f"the estimate is of model {record.get('model_id')}, "
                f"the card of model {card.get('model_id')}"
            )
    updated = dict(card)
    updated["rd_points"] = [point for record in records for point in rd_points(record, gop)]
    bd = dict(card.get("bd_rate_vs_x265", {}))
    for metric in BD_METRICS:
        bd[metric] = {}
    for record in records:
        for metric, row in bd_rates(record).items():
            bd[metric].update(row)
    for metric in BD_METRICS:
        if len(bd[metric]) > 1:
            bd[metric]["average"] = bdrate.average(
                [_bd_value(value) for value in bd[metric].values()]
            ).to_json()
    bd["canfvc_points"] = (
        "estimated (rd_points): "
        + ", ".join(
            f"{name} {seq['frames']} dev frames from {seq['start']}"
            for record in records
            for name, seq in record["sequences"].items()
        )
        + "; x265 scored on the same frames"
    )
    updated["bd_rate_vs_x265"] = bd
    return updated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.eval.card", description=__doc__)
    parser.add_argument("--card", type=Path, required=True, help="the model card to update")
    parser.add_argument("estimates", type=Path, nargs="+", help="estimate records of its model")
    parser.add_argument(
        "--gop", type=int, help="the intra period of records that do not store theirs"
    )
    options = parser.parse_args(argv)
    try:
        card = json.loads(options.card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"canfvc: error: cannot read {options.card}: {exc}")
    try:
        updated = update_card(card, [read_record(path) for path in options.estimates], options.gop)
    except CanfvcError as exc:
        sys.exit(f"canfvc: error: {exc}")
    options.card.write_text(json.dumps(updated, indent=CARD_INDENT, ensure_ascii=False) + "\n")
    for point in updated["rd_points"]:
        print(
            f"{point['sequence']} λ {point['lambda']:g}: {point['bpp']} bpp, "
            f"PSNR-RGB {point['psnr_rgb']} dB, P/I {point['p_over_i']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
