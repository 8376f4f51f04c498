"""Whether P-frames hold and restore quality: a GOP's steady state and its way back after a cut.

    python -m canfvc_codec.lab.steady --config bench/configs/dev.json \\
        --model models/canfvc-small.pt --lambdas 256,512,1024,2048 \\
        --out bench/results/steady/<model id>.json

For every dev clip and λ, one GOP of :data:`GOP_FRAMES` frames with no adaptive I-frames, the
I-frame at λ itself (so that λ alone sets the quality asked for), rates estimated by the forward
pass as :mod:`canfvc_codec.lab.estimate` estimates them:

- **steady state**: mean PSNR-RGB of frames :data:`STEADY_FRAMES` of the GOP against its I-frame's
  (``gap``: how far the P-frames settle below the quality λ gives an I-frame). A clip with a scene
  cut in its dev range (:data:`SCENE_CUTS`) starts its GOP at the cut, so that the I-frame and the
  P-frames show one scene.
- **after the cut**: the GOP starting on the frame before the cut, so that the first P-frame
  codes a new picture from an unrelated reference; each P-frame of the next
  :data:`RECOVERY_FRAMES` against that frame coded as an I-frame at λ (``recovered_at``: the
  first P-frame after the cut within :data:`RECOVERY_TOLERANCE_DB` of its I-frame, 1 for the
  cut frame itself; None when none is).

Every per-frame row (type, estimated bytes, PSNR-RGB) is kept in the record, and the summary is
printed one line per clip and λ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from canfvc_codec.bitstream import INTRA
from canfvc_codec.errors import CanfvcError
from canfvc_codec.eval.config import load_config
from canfvc_codec.lab.estimate import estimate_sequence, read_sequence
from canfvc_codec.networks import VideoModel
from canfvc_codec.rates import Rates
from canfvc_codec.threads import thread_count

GOP_FRAMES = 32
STEADY_FRAMES = slice(24, 32)
RECOVERY_FRAMES = 8
RECOVERY_TOLERANCE_DB = 1.5
DEFAULT_LAMBDAS = (256.0, 512.0, 1024.0, 2048.0)
# The first frame of a new scene within a clip's dev range, as an offset from its start: bikes'
# dev frames 186-249 cut between 186 and 187 (shared/DATA.md).
SCENE_CUTS = {"bikes": 1}
BITS_PER_BYTE = 8


def steady_rates(model: VideoModel, lmbda: float) -> Rates:
    """The rates of the harness: the motion λ the encoder would choose, the I-frame at λ."""
    return Rates.resolve(lmbda, model.config.anchor_lambdas, intra=lmbda)


def _frames(point: dict, pixels: int) -> list[dict]:
    return [
        {
            "type": row["type"],
            "bytes": row["bpp"] * pixels / BITS_PER_BYTE,
            "psnr-rgb": row["psnr-rgb"],
        }
        for row in point["frames"]
    ]


def _gop(model: VideoModel, info, pictures: list, lmbda: float, gop: int) -> list[dict]:
    point = estimate_sequence(
        model, info, pictures, gop, steady_rates(model, lmbda), adaptive_intra=False
    )
    return _frames(point, info.width * info.height)


def steady_state(model: VideoModel, info, pictures: list, lmbda: float) -> dict:
    """One GOP of ``pictures`` at ``lmbda``: its frames and the gap of its steady state."""
    frames = _gop(model, info, pictures[:GOP_FRAMES], lmbda, GOP_FRAMES)
    intra = frames[0]["psnr-rgb"]
    steady = float(np.mean([f["psnr-rgb"] for f in frames[STEADY_FRAMES]]))
    p_bytes = float(np.mean([f["bytes"] for f in frames[STEADY_FRAMES]]))
    return {
        "i_frame_psnr": intra,
        "i_frame_bytes": frames[0]["bytes"],
        "steady_psnr": steady,
        "steady_p_bytes": p_bytes,
        "gap": intra - steady,
        "frames": frames,
    }


def after_cut(model: VideoModel, info, pictures: list, cut: int, lmbda: float) -> dict:
    """The GOP from the frame before the cut at ``cut``, against the frames after it coded as
    I-frames."""
    span = pictures[cut - 1 : cut + RECOVERY_FRAMES]
    chain = _gop(model, info, span, lmbda, GOP_FRAMES)[1:]
    intra = _gop(model, info, span[1:], lmbda, 1)
    assert all(f["type"] == INTRA for f in intra)
    gaps = [i["psnr-rgb"] - p["psnr-rgb"] for p, i in zip(chain, intra, strict=True)]
    recovered = next((k + 1 for k, gap in enumerate(gaps) if gap <= RECOVERY_TOLERANCE_DB), None)
    return {
        "p_frames": chain,
        "i_frames": intra,
        "gaps": gaps,
        "recovered_at": recovered,
    }


def run(
    config_path: Path,
    model_name: str,
    lambdas: tuple[float, ...],
    log=print,
    sequences_wanted: tuple[str, ...] = (),
    save=None,
) -> dict:
    """The record of every clip of the config (or of ``sequences_wanted``) at every λ;
    ``save(record)`` is called after each clip with what is measured so far."""
    from canfvc_codec.weights import load_model

    config = load_config(config_path, only=sequences_wanted)
    model, model_id = load_model(model_name, "cpu")
    model.eval()
    record: dict = {
        "model": model_name,
        "model_id": model_id.hex(),
        "gop_frames": GOP_FRAMES,
        "steady_frames": [STEADY_FRAMES.start, STEADY_FRAMES.stop - 1],
        "recovery_tolerance_db": RECOVERY_TOLERANCE_DB,
        "sequences": {},
    }
    for spec in config.sequences:
        cut = SCENE_CUTS.get(spec.name)
        info, pictures = read_sequence(spec, (cut or 0) + GOP_FRAMES)
        clip: dict = {"steady": {}, "after_cut": {}}
        for lmbda in lambdas:
            steady = steady_state(model, info, pictures[cut or 0 :], lmbda)
            clip["steady"][f"{lmbda:g}"] = steady
            line = (
                f"{spec.name} λ {lmbda:g}: I {steady['i_frame_psnr']:.2f} dB, frames "
                f"{STEADY_FRAMES.start}-{STEADY_FRAMES.stop - 1} {steady['steady_psnr']:.2f} dB "
                f"(gap {steady['gap']:.2f}), {steady['steady_p_bytes']:.0f} B per P-frame"
            )
            if cut is not None:
                recovery = after_cut(model, info, pictures, cut, lmbda)
                clip["after_cut"][f"{lmbda:g}"] = recovery
                line += (
                    f"; after the cut: gap {recovery['gaps'][0]:.2f} dB at the cut, "
                    f"{recovery['gaps'][-1]:.2f} dB {RECOVERY_FRAMES} frames on, recovered at "
                    f"{recovery['recovered_at']}"
                )
            log(line)
        record["sequences"][spec.name] = clip
        if save is not None:
            save(record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.lab.steady", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--lambdas",
        default=",".join(f"{v:g}" for v in DEFAULT_LAMBDAS),
        help="comma-separated λ values",
    )
    parser.add_argument(
        "--sequences", default="", help="comma-separated clips of the config (default: all)"
    )
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, help="write the record here (JSON)")
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    lambdas = tuple(float(v) for v in options.lambdas.split(","))
    wanted = tuple(name for name in options.sequences.split(",") if name)

    def save(record: dict) -> None:
        if options.out is not None:
            options.out.parent.mkdir(parents=True, exist_ok=True)
            options.out.write_text(json.dumps(record, indent=1) + "\n")

    try:
        run(options.config, options.model, lambdas, sequences_wanted=wanted, save=save)
    except (CanfvcError, OSError, ValueError) as exc:
        sys.exit(f"canfvc: error: {exc}")


if __name__ == "__main__":
    main()
