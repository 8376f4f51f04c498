"""Throughput of the entropy coder on a 10^6-symbol latent with per-symbol scales.

Run as ``python -m canfvc_codec.lab.entropy --out bench/results``; writes ``entropy.json``.
Times are wall-clock on one thread with every Python step included: for ``compress`` that is the
σ → table index mapping, rounding, grouping, range coding and the escape stream; ``decompress``
likewise down to the float latent. The coder-only figures start from ready integer symbols and
table indexes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from canfvc_codec.entropy.coder import decode_indexed, encode_indexed
from canfvc_codec.entropy.gaussian import GaussianConditional
from canfvc_codec.entropy.scale_table import SCALE_MIN, scale_indexes

# A 1080p frame's latent is 128 x 68 x 120 = 1 044 480 symbols; this is the same order.
LATENT_SHAPE = (1, 128, 64, 122)
SCALE_MAX_BENCH = 32.0  # σ log-uniform in [SCALE_MIN, this]: dead channels to busy ones
REPEATS = 7
SEED = 0
RESULT_FILE = "entropy.json"


def _timed(fn: Callable[[], object], repeats: int) -> tuple[dict, object]:
    """Wall-clock and CPU seconds of each of ``repeats`` calls (after one warm-up call).

    CPU time is reported beside wall time because on a shared machine the wall time also counts
    the waits for a core; with one thread, CPU time is what the work itself costs.
    """
    fn()  # warm-up: first-touch allocations, lazy imports
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return {"wall": wall, "cpu": cpu}, result


def _rate(symbols: int, times: dict) -> dict:
    wall, cpu = times["wall"], times["cpu"]
    return {
        "wall_best_s": min(wall),
        "wall_median_s": statistics.median(wall),
        "cpu_median_s": statistics.median(cpu),
        "msymbols_per_s_best": symbols / min(wall) / 1e6,
        "msymbols_per_s_median": symbols / statistics.median(wall) / 1e6,
        "msymbols_per_cpu_s": symbols / max(statistics.median(cpu), 1e-9) / 1e6,
    }


def latent(shape: tuple[int, ...] = LATENT_SHAPE, seed: int = SEED):
    """``(y, scales, means)``: Gaussian latents with log-uniform per-symbol scales."""
    gen = torch.Generator().manual_seed(seed)
    log_scales = torch.empty(shape).uniform_(
        math.log(SCALE_MIN), math.log(SCALE_MAX_BENCH), generator=gen
    )
    scales = torch.exp(log_scales)
    means = torch.randn(shape, generator=gen) * 2
    return means + torch.randn(shape, generator=gen) * scales, scales, means


def run(out_dir: Path, repeats: int = REPEATS) -> dict:
    """Measure, write ``out_dir/entropy.json`` and return the results."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        model = GaussianConditional().eval()
        build_s = time.perf_counter() - start
        y, scales, means = latent()
        n = y.numel()
        _, likelihoods = model(y, scales, means)
        estimated_bits = float(-torch.log2(likelihoods.double()).sum())

        enc_times, data = _timed(lambda: model.compress(y, scales, means), repeats)
        dec_times, y_hat = _timed(lambda: model.decompress(data, scales, means), repeats)
        if not torch.equal(y_hat, model.quantize(y, means)):
            raise AssertionError("decoded latent differs from the encoded one")

        tables = model.tables()
        symbols, indexes = model.symbols(y, means), scale_indexes(scales)
        coder_enc, coder_data = _timed(lambda: encode_indexed(symbols, indexes, tables), repeats)
        coder_dec, decoded = _timed(lambda: decode_indexed(coder_data, indexes, tables), repeats)
        if not np.array_equal(decoded, symbols):
            raise AssertionError("coder round trip failed")
    finally:
        torch.set_num_threads(threads)

    results = {
        "symbols": n,
        "latent_shape": list(LATENT_SHAPE),
        "scales": f"log-uniform in [{SCALE_MIN}, {SCALE_MAX_BENCH}], one per symbol",
        "threads": 1,
        "load_average_1min": os.getloadavg()[0],
        "repeats": repeats,
        "bytes": len(data),
        "bits_per_symbol": 8 * len(data) / n,
        "estimated_bits_per_symbol": estimated_bits / n,
        "table_build_s": build_s,
        "compress": _rate(n, enc_times),
        "decompress": _rate(n, dec_times),
        "coder_encode": _rate(n, coder_enc),
        "coder_decode": _rate(n, coder_dec),
        "targets_msymbols_per_s": {"encode": 20, "decode": 10},
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    results = run(args.out, args.repeats)
    for name in ("compress", "decompress", "coder_encode", "coder_decode"):
        rate = results[name]
        print(
            f"{name:12s} {rate['msymbols_per_s_best']:6.1f} M symbols/s best, "
            f"{rate['msymbols_per_s_median']:6.1f} median, "
            f"{rate['msymbols_per_cpu_s']:6.1f} per CPU second"
        )
    print(
        f"{results['bits_per_symbol']:.4f} bits/symbol coded, "
        f"{results['estimated_bits_per_symbol']:.4f} estimated; "
        f"written to {args.out / RESULT_FILE}"
    )


if __name__ == "__main__":
    main()
