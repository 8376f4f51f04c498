"""BD-rate of one canfvc model against another, from their RD records.

    python -m canfvc_codec.lab.bd_between --reference A/results.json [...] \\
        --test B/results.json [...] [--label canfvc] --out bench/results/real/B_vs_A.json

Each side is one or more records of the same kind: ``canfvc eval`` results (points labelled
``canfvc``, real files) or estimate records (``--label canfvc-estimate``). Points are gathered per
sequence (a later file's point at the same λ replaces an earlier one's), and for every sequence
both sides have, the BD-rate of the test model against the reference is computed per metric
(negative: the test model needs fewer bits for the same quality), with the average over
sequences. The mean bits of P-frames over I-frames of each side are given where rows say frame
types, and for each point its I-frames and their share of the frames' bits (every frame of a
sequence has the same pixels, so the share of bpp).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from canfvc_codec.eval import bdrate
from canfvc_codec.eval.metrics import frame_type_split
from canfvc_codec.eval.runner import BD_METRICS, CANFVC


def points_by_sequence(paths: list[Path], label: str) -> dict[str, list[dict]]:
    """{sequence: points ordered by λ} of the ``label`` codec over ``paths``."""
    table: dict[str, dict[float, dict]] = {}
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        for name, seq in record["sequences"].items():
            for point in seq["codecs"].get(label, []):
                table.setdefault(name, {})[point["value"]] = point
    return {name: [by[v] for v in sorted(by)] for name, by in table.items()}


def p_over_i(points: list[dict]) -> float | None:
    """Mean bpp of P-frames over mean bpp of I-frames, all points together."""
    frames = [f for point in points for f in point.get("frames", []) if "type" in f]
    ratio = frame_type_split(frames)["p_over_i"]
    return None if ratio is None else round(ratio, 3)


def intra_use(points: list[dict]) -> dict[str, dict] | None:
    """{λ: I-frames, frames, the I-frames' share of the frames' bits} of each point."""
    use = {}
    for point in points:
        frames = point.get("frames", [])
        if not frames or not all("type" in f for f in frames):
            return None
        split = frame_type_split(frames)
        use[f"{point['value']:g}"] = {
            "i_frames": split["i_frames"],
            "frames": len(frames),
            "i_bits_share": round(split["i_bits_share"], 4),
        }
    return use


def compare(reference: dict[str, list[dict]], test: dict[str, list[dict]]) -> dict:
    shared = [name for name in test if name in reference]
    table: dict = {}
    for metric in BD_METRICS:
        row = {
            name: bdrate.bd_rate(
                [p["bpp"] for p in reference[name]],
                [p[metric] for p in reference[name]],
                [p["bpp"] for p in test[name]],
                [p[metric] for p in test[name]],
            )
            for name in shared
        }
        table[metric] = {name: value.to_json() for name, value in row.items()}
        table[metric]["average"] = bdrate.average(list(row.values())).to_json()
    return {
        "sequences": shared,
        "bd_rate_test_vs_reference": table,
        "p_over_i": {
            name: {"reference": p_over_i(reference[name]), "test": p_over_i(test[name])}
            for name in shared
        },
        "intra_use": {
            name: {"reference": intra_use(reference[name]), "test": intra_use(test[name])}
            for name in shared
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, nargs="+", required=True)
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--label", default=CANFVC, help="the codec label of the points")
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    try:
        result = compare(
            points_by_sequence(options.reference, options.label),
            points_by_sequence(options.test, options.label),
        )
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"bd_between: error: {exc!r}")
    result["reference"] = [str(p) for p in options.reference]
    result["test"] = [str(p) for p in options.test]
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=1) + "\n")
    for metric, row in result["bd_rate_test_vs_reference"].items():
        print(f"{metric}: {row}", file=sys.stderr)


if __name__ == "__main__":
    main()
