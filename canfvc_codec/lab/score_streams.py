"""Score .cvc streams coded outside ``canfvc eval`` as an evaluation record of the same frames.

    python -m canfvc_codec.lab.score_streams \\
        --like bench/results/hevc_intra/bikes8_x265/results.json \\
        --sequence bikes --reference reference.y4m \\
        --stream hevc_l256.cvc hevc_l256.dec.y4m --stream hevc_l1024.cvc hevc_l1024.dec.y4m \\
        --note "canfvc encode --no-adaptive-intra --intra-coder hevc" --out OUT

``canfvc eval`` codes with the encoder's default frame-type choice; streams coded with other
options (``--no-adaptive-intra``) are scored here the way it scores its own: each decoded video
against the reference frames with ``eval.metrics.frame_metrics``, the rate from the stream's real
size, frame types and sizes from its records. The sequence's fields are copied from ``--like``, an
evaluation record of the same frames (the x265 anchors, say), so that ``eval.merge`` and
:mod:`canfvc_codec.lab.bd_between` accept the result beside it. Coding times are not known here
(None).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from canfvc_codec.bitstream import bits_per_pixel, describe
from canfvc_codec.eval.metrics import QUALITY_KEYS, frame_metrics, mean_metrics
from canfvc_codec.eval.report import write_report
from canfvc_codec.eval.runner import CANFVC, RESULTS_VERSION, compute_bd_rates
from canfvc_codec.hevc import DEFAULT_INTRA_CODER
from canfvc_codec.io import open_reader

SEQUENCE_FIELDS = ("source", "start", "frames", "width", "height", "fps", "gop", "bit_depth")


def score_stream(stream: Path, decoded: Path, reference: Path) -> tuple[dict, dict]:
    """(the point of one stream, its header as ``canfvc info`` gives it)."""
    with stream.open("rb") as handle:
        info = describe(handle)
    with open_reader(str(reference)) as ref, open_reader(str(decoded)) as dec:
        video = ref.info
        rows = []
        pairs = zip(ref, dec, strict=True)
        for record, (a, b) in zip(info["frames"], pairs, strict=True):
            row = {"frame": record["index"], "type": record["type"], "bytes": record["bytes"]}
            row["bpp"] = bits_per_pixel(record["bytes"], video.width, video.height)
            row.update(frame_metrics(a, b, video))
            rows.append(row)
    quality = mean_metrics(rows)
    total = info["totals"]["bytes"]
    point = {
        "codec": CANFVC,
        "param": "lambda",
        "value": info["header"]["lambda"],
        "bytes": total,
        "bpp": bits_per_pixel(total, video.width, video.height, len(rows)),
        **{key: quality[key] for key in QUALITY_KEYS},
        "encode_s_per_frame": None,
        "decode_s_per_frame": None,
        "encode_peak_rss_mib": None,
        "decode_peak_rss_mib": None,
        "frames": rows,
    }
    return point, info["header"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--like", type=Path, required=True)
    parser.add_argument("--sequence", required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument(
        "--stream", nargs=2, action="append", required=True, metavar=("CVC", "DECODED")
    )
    parser.add_argument("--note", default="", help="how the streams were coded")
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    like = json.loads(options.like.read_text(encoding="utf-8"))
    template = like["sequences"][options.sequence]
    scored = [score_stream(Path(s), Path(d), options.reference) for s, d in options.stream]
    headers = [header for _, header in scored]
    if len({(h["model_id"], h["intra_coder"]) for h in headers}) != 1:
        raise SystemExit("score_streams: the streams differ in model or intra coder")
    sequence = {key: template[key] for key in SEQUENCE_FIELDS}
    points = sorted((point for point, _ in scored), key=lambda p: p["value"])
    sequence.update(codecs={CANFVC: points}, skipped={})
    status = {"status": "ok", "model_id": headers[0]["model_id"], "note": options.note}
    if headers[0]["intra_coder"] != DEFAULT_INTRA_CODER:
        status["intra_coder"] = headers[0]["intra_coder"]
    results = {
        "version": RESULTS_VERSION,
        "config": like.get("config"),
        "config_path": like.get("config_path"),
        "date": None,
        "machine": None,
        "ffmpeg": None,
        "anchors": {},
        "canfvc": status,
        "sequences": {options.sequence: sequence},
    }
    results["bd_rate"] = compute_bd_rates(results["sequences"], [CANFVC])
    write_report(results, options.out)


if __name__ == "__main__":
    main()
