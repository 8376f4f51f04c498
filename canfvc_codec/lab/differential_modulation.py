"""Rounding, plain binary, 1st and 2nd order differential modulation on one small model (Fig. 2).

    python -m canfvc_codec.lab.differential_modulation --out docs/lab/experiments

A small convolutional autoencoder codes groups of consecutive real frames; only its latent
quantiser (and the entropy model that goes with it) changes between runs. Every run sees the same
batches in the same order, from the training clips of ``canfvc_codec.datasets.TRAIN_RANGES``; the
last frames of each range are held out for evaluation and never trained on. It runs on one CPU
thread in a few minutes and writes a JSON record and PNG figures.

The decoder of frame t sees the quantised latents of frames t-2..t: a Delta-Sigma bit stream is
only meaningful to a decoder that can low-pass it over time, and rounding gets the same window so
that the models stay the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canfvc_codec.datasets import TRAIN_RANGES, ClipRange, clip_path
from canfvc_codec.psnr import psnr_from_mse
from canfvc_codec.quant.binary_entropy import BinaryEntropyModel
from canfvc_codec.quant.modulation import DifferentialModulator
from canfvc_codec.quant.quantizers import LatentQuantizer, make_quantizer
from canfvc_codec.threads import thread_count

# Frames are decoded at this width (height keeps the aspect ratio): it softens the H.264 blur of
# the sources and keeps the experiment small.
DECODE_WIDTH = 320
HELD_OUT_FRAMES = 16  # last frames of each training range, for evaluation only
CROP = 64  # training crops
EVAL_CROP = 128  # centre crops of the held-out frames
GROUP_FRAMES = 6  # frames per group: the axis the modulation runs along
BATCH_GROUPS = 2
EVAL_GROUPS_PER_CLIP = 2
FILTERS = 32
LATENT_CHANNELS = 16  # at 1/4 resolution: a binary latent costs at most 1 bpp
DECODER_WINDOW = 3  # quantised latents of frames t-2..t feed the decoder of frame t
BINARY_CONTEXT = 2  # previous bits seen by the binary entropy model
# The modulators see c = bound * tanh(encoder output): inside the stable range of both orders.
MODULATOR_INPUT_BOUND = 0.5
LEARNING_RATE = 1e-3
LIKELIHOOD_BOUND = 1e-9
PIXEL_MAX = 1.0
PIXEL_MEAN = 0.5  # the networks work on centred pixels
LOSS_SMOOTHING = 25  # steps in the moving average of the plotted training loss
LOSS_WINDOWS = 6  # the training loss is also summarised as means over this many equal windows


# ----------------------------------------------------------------------------------------------
# Data


def decode_clip(clip: ClipRange, width: int = DECODE_WIDTH) -> Tensor:
    """Frames ``clip.start .. clip.start + clip.count`` as RGB float (T, 3, H, W) in [0, 1]."""
    probe = _decode_raw(clip, width, frames=1)
    height = len(probe) // (width * 3)
    data = _decode_raw(clip, width, frames=clip.count)
    array = np.frombuffer(data, np.uint8).reshape(clip.count, height, width, 3)
    return torch.from_numpy(array.copy()).permute(0, 3, 1, 2).float() / 255.0


def _decode_raw(clip: ClipRange, width: int, frames: int) -> bytes:
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip_path(clip.clip)),
        "-vf", f"select=gte(n\\,{clip.start}),scale={width}:-2:flags=area",
        "-fps_mode", "passthrough", "-frames:v", str(frames),
        "-pix_fmt", "rgb24", "-f", "rawvideo", "-",
    ]  # fmt: skip
    return subprocess.run(cmd, check=True, capture_output=True).stdout


@dataclass
class FrameData:
    """Training frames and a fixed evaluation batch, both from the training clips."""

    train: list[Tensor]  # per clip (T, 3, H, W)
    evaluation: Tensor  # (G, GROUP_FRAMES, 3, EVAL_CROP, EVAL_CROP)


def load_frames(ranges: tuple[ClipRange, ...] = TRAIN_RANGES) -> FrameData:
    train, evaluation = [], []
    for clip in ranges:
        frames = decode_clip(clip)
        train.append(frames[: clip.count - HELD_OUT_FRAMES])
        held_out = frames[clip.count - HELD_OUT_FRAMES :]
        _, _, height, width = held_out.shape
        top, left = (height - EVAL_CROP) // 2, (width - EVAL_CROP) // 2
        for g in range(EVAL_GROUPS_PER_CLIP):
            group = held_out[g * GROUP_FRAMES : (g + 1) * GROUP_FRAMES]
            evaluation.append(group[:, :, top : top + EVAL_CROP, left : left + EVAL_CROP])
    return FrameData(train=train, evaluation=torch.stack(evaluation))


def sample_batch(data: FrameData, generator: torch.Generator) -> Tensor:
    """Random groups of consecutive frames, random crops and flips: (B, T, 3, CROP, CROP)."""
    weights = torch.tensor([len(frames) for frames in data.train], dtype=torch.float)
    groups = []
    for _ in range(BATCH_GROUPS):
        clip = data.train[int(torch.multinomial(weights, 1, generator=generator))]
        _, _, height, width = clip.shape
        start = _randint(len(clip) - GROUP_FRAMES + 1, generator)
        top, left = _randint(height - CROP + 1, generator), _randint(width - CROP + 1, generator)
        group = clip[start : start + GROUP_FRAMES, :, top : top + CROP, left : left + CROP]
        if _randint(2, generator):
            group = group.flip(-1)
        groups.append(group)
    return torch.stack(groups)


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=generator))


# ----------------------------------------------------------------------------------------------
# Model


class TemporalLaplacePrior(nn.Module):
    """Rate model for rounded latents: a discretised Laplace per channel whose mean is a learned
    multiple of the same latent in the previous frame (the counterpart of the binary model's
    temporal context)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.prediction = nn.Parameter(torch.zeros(channels))

    def forward(self, values: Tensor) -> Tensor:
        previous = torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], 1)
        mean = self.prediction.view(1, 1, -1, 1, 1) * previous
        scale = self.log_scale.exp().view(1, 1, -1, 1, 1)
        laplace = torch.distributions.Laplace(mean, scale)
        upper, lower = laplace.cdf(values + 0.5), laplace.cdf(values - 0.5)
        return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2)


def _deconv(cin: int, cout: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride, kernel // 2, output_padding=stride - 1)


class GroupAutoencoder(nn.Module):
    """Per-frame conv encoder, a latent quantiser along the frame axis, a multi-frame decoder."""

    def __init__(self, quantizer: LatentQuantizer) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.encoder = nn.Sequential(
            _conv(3, FILTERS, 5, 2), nn.ReLU(),
            _conv(FILTERS, FILTERS, 5, 2), nn.ReLU(),
            _conv(FILTERS, LATENT_CHANNELS, 3),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            _conv(DECODER_WINDOW * LATENT_CHANNELS, FILTERS, 3), nn.ReLU(),
            _deconv(FILTERS, FILTERS, 5, 2), nn.ReLU(),
            _deconv(FILTERS, 3, 5, 2),
        )  # fmt: skip
        self.entropy: nn.Module
        if quantizer.binary:
            self.entropy = BinaryEntropyModel(LATENT_CHANNELS, BINARY_CONTEXT)
        else:
            self.entropy = TemporalLaplacePrior(LATENT_CHANNELS)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, likelihoods, quantised latents) of frames (N, T, 3, H, W)."""
        n, t = frames.shape[:2]
        latents = self.encoder(frames.flatten(0, 1) - PIXEL_MEAN).unflatten(0, (n, t))
        if self.quantizer.binary:
            latents = MODULATOR_INPUT_BOUND * torch.tanh(latents)
        quantised, _ = self.quantizer(latents)
        likelihoods = self.entropy(quantised)
        padding = torch.zeros_like(quantised[:, :1]).expand(-1, DECODER_WINDOW - 1, -1, -1, -1)
        padded = torch.cat([padding, quantised], 1)
        windows = torch.cat([padded[:, k : k + t] for k in range(DECODER_WINDOW)], 2)
        reconstruction = self.decoder(windows.flatten(0, 1)).unflatten(0, (n, t)) + PIXEL_MEAN
        return reconstruction, likelihoods, quantised


def rate_distortion(model: GroupAutoencoder, frames: Tensor, lmbda: float) -> dict[str, Tensor]:
    reconstruction, likelihoods, quantised = model(frames)
    pixels = frames.shape[0] * frames.shape[1] * frames.shape[-2] * frames.shape[-1]
    bpp = -torch.log2(likelihoods).sum() / pixels
    mse = F.mse_loss(reconstruction, frames)
    return {"loss": lmbda * mse + bpp, "bpp": bpp, "mse": mse, "quantised": quantised,
            "reconstruction": reconstruction}  # fmt: skip


def psnr(mse: float) -> float:
    return psnr_from_mse(mse, PIXEL_MAX)


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass
class RunRecord:
    quantizer: str
    lmbda: float
    steps: int
    seconds: float = 0.0  # wall clock (the machine may be shared)
    cpu_seconds: float = 0.0
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_bpp: list[float] = field(default_factory=list)
    eval_psnr: list[float] = field(default_factory=list)
    final_bpp_estimated: float = 0.0
    final_bpp_coded: float | None = None  # real range-coded size (binary quantisers)
    final_psnr: float = 0.0


@torch.no_grad()
def evaluate(model: GroupAutoencoder, frames: Tensor, lmbda: float) -> dict[str, float]:
    model.eval()
    out = rate_distortion(model, frames, lmbda)
    mse = F.mse_loss(out["reconstruction"].clamp(0, PIXEL_MAX), frames).item()
    model.train()
    return {"loss": out["loss"].item(), "bpp": out["bpp"].item(), "psnr": psnr(mse)}


@torch.no_grad()
def coded_bpp(model: GroupAutoencoder, frames: Tensor) -> float | None:
    """bpp of the real range-coded bits, checked to decode back exactly."""
    if not isinstance(model.entropy, BinaryEntropyModel):
        return None
    model.eval()
    _, _, quantised = model(frames)
    model.entropy.update()
    data = model.entropy.compress(quantised)
    if not torch.equal(model.entropy.decompress(data, tuple(quantised.shape)), quantised):
        raise RuntimeError("binary latents did not survive the range coder")
    model.train()
    pixels = frames.shape[0] * frames.shape[1] * frames.shape[-2] * frames.shape[-1]
    return len(data) * 8 / pixels


def train_run(
    kind: str, lmbda: float, data: FrameData, steps: int, eval_every: int, seed: int
) -> RunRecord:
    torch.manual_seed(seed)  # same initial weights for every quantiser
    model = GroupAutoencoder(make_quantizer(kind))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)  # same batches for every quantiser
    record = RunRecord(kind, lmbda, steps)
    started, cpu_started = time.perf_counter(), time.process_time()
    for step in range(1, steps + 1):
        out = rate_distortion(model, sample_batch(data, generator), lmbda)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        record.train_loss.append(out["loss"].item())
        if step % eval_every == 0 or step == steps:
            result = evaluate(model, data.evaluation, lmbda)
            record.eval_steps.append(step)
            record.eval_loss.append(result["loss"])
            record.eval_bpp.append(result["bpp"])
            record.eval_psnr.append(result["psnr"])
    record.final_bpp_estimated = record.eval_bpp[-1]
    record.final_psnr = record.eval_psnr[-1]
    record.final_bpp_coded = coded_bpp(model, data.evaluation)
    record.seconds = time.perf_counter() - started
    record.cpu_seconds = time.process_time() - cpu_started
    return record


# ----------------------------------------------------------------------------------------------
# Figures

COLOURS = {"round": "tab:gray", "binary": "tab:green", "dm1": "tab:blue", "dm2": "tab:red"}
LINESTYLES = ("-", "--", ":", "-.")


def _smooth(values: list[float], width: int) -> np.ndarray:
    array = np.asarray(values)
    if len(array) < width:
        return array
    return np.convolve(array, np.ones(width) / width, mode="valid")


def plot(records: list[RunRecord], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lambdas = sorted({r.lmbda for r in records})
    style = {lmbda: LINESTYLES[i % len(LINESTYLES)] for i, lmbda in enumerate(lambdas)}
    label = lambda r: f"{r.quantizer}, λ={r.lmbda:g}"  # noqa: E731

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in records:
        kw = {"color": COLOURS[r.quantizer], "linestyle": style[r.lmbda], "label": label(r)}
        smooth = _smooth(r.train_loss, LOSS_SMOOTHING)
        axes[0].plot(np.arange(len(smooth)) + LOSS_SMOOTHING, smooth, **kw)
        axes[1].plot(r.eval_steps, r.eval_psnr, marker=".", **kw)
        axes[2].plot(r.eval_steps, r.eval_bpp, marker=".", **kw)
    axes[0].set(title=f"training loss λ·MSE + bpp ({LOSS_SMOOTHING}-step mean)", xlabel="step",
                yscale="log")  # fmt: skip
    axes[1].set(title="held-out PSNR-RGB (dB)", xlabel="step")
    axes[2].set(title="held-out rate (bpp, estimated)", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    curves = out / "differential-modulation-training.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for kind in dict.fromkeys(r.quantizer for r in records):
        runs = [r for r in records if r.quantizer == kind]
        runs.sort(key=lambda r: r.final_bpp_estimated)
        bpp = [r.final_bpp_coded or r.final_bpp_estimated for r in runs]
        ax.plot(bpp, [r.final_psnr for r in runs], marker="o", color=COLOURS[kind], label=kind)
        # Where the model was along the way: the checkpoints of each run, faint.
        for r in runs:
            ax.plot(r.eval_bpp, r.eval_psnr, color=COLOURS[kind], alpha=0.25, marker=".", lw=0.8)
    ax.set(xlabel="bpp (coded for binary, estimated for round)", ylabel="PSNR-RGB (dB)",
           title="held-out RD after training (faint: checkpoints)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    rd = out / "differential-modulation-rd.png"
    fig.savefig(rd, dpi=110)
    plt.close(fig)
    return [curves, rd]


def window_means(values: list[float], windows: int = LOSS_WINDOWS) -> list[float]:
    """Mean of ``values`` over ``windows`` consecutive equal parts: a compact convergence curve."""
    return [float(np.mean(part)) for part in np.array_split(np.asarray(values), windows)]


def noise_spectra(
    orders: tuple[int, ...] = (1, 2), sequences: int = 128, length: int = 1024, seed: int = 0
) -> dict[str, list[float]]:
    """Averaged, Hann-windowed power spectra of b - c for a uniform random input in [-0.5, 0.5]."""
    generator = torch.Generator().manual_seed(seed)
    c = torch.rand((length, sequences), generator=generator, dtype=torch.float64) - 0.5
    window = np.hanning(length)[:, None]
    spectra: dict[str, list[float]] = {}
    for order in orders:
        bits = DifferentialModulator(order, frame_dim=0).run(c).bits
        error = np.fft.rfft((bits - c).numpy() * window, axis=0)
        spectra[f"order{order}"] = np.mean(np.abs(error) ** 2, axis=1).tolist()
    spectra["omega"] = np.linspace(0, np.pi, length // 2 + 1).tolist()
    return spectra


def plot_noise_spectra(spectra: dict[str, list[float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    omega = np.asarray(spectra["omega"])[1:]
    gain = np.abs(1 - np.exp(-1j * omega)) ** 2
    # Scale each NTF model to the measurement at the low end of the plotted band.
    anchor = np.searchsorted(omega, np.pi / 32)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key, colour in (("order1", "tab:blue"), ("order2", "tab:red")):
        order = int(key[-1])
        power = np.asarray(spectra[key])[1:]
        model = gain**order * power[anchor] / gain[anchor] ** order
        ax.loglog(omega / np.pi, power, color=colour, label=f"measured, order {order}")
        ax.loglog(omega / np.pi, model, color=colour, ls="--", label=f"|1 - e^-jω|^{2 * order}")
    ax.set(xlabel="ω / π", ylabel="power of b - c", title="noise shaping on a random input")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path = out / "differential-modulation-ntf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/lab/experiments"))
    parser.add_argument("--quantizers", default="round,binary,dm1,dm2")
    parser.add_argument("--lambdas", default="128,1024")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=thread_count, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    print(plot_noise_spectra(noise_spectra(), args.out))
    data = load_frames()
    records = []
    for lmbda in (float(x) for x in args.lambdas.split(",")):
        for kind in args.quantizers.split(","):
            record = train_run(kind, lmbda, data, args.steps, args.eval_every, args.seed)
            records.append(record)
            coded = f"{record.final_bpp_coded:.4f}" if record.final_bpp_coded else "-"
            print(f"{kind:6s} λ={lmbda:<6g} {record.seconds:.0f}s ({record.cpu_seconds:.0f}s CPU)  "
                  f"bpp est {record.final_bpp_estimated:.4f} coded {coded}  "
                  f"PSNR {record.final_psnr:.2f} dB", flush=True)  # fmt: skip
    print(f"mean training loss over {LOSS_WINDOWS} windows of {args.steps // LOSS_WINDOWS} steps:")
    for r in records:
        means = " ".join(f"{m:7.3f}" for m in window_means(r.train_loss))
        print(f"{r.quantizer:6s} λ={r.lmbda:<6g} {means}")
    (args.out / "differential-modulation.json").write_text(
        json.dumps(
            {"config": vars(args) | {"out": str(args.out)}, "runs": [asdict(r) for r in records]},
            indent=1,
        )  # fmt: skip
    )
    for path in plot(records, args.out):
        print(path)


if __name__ == "__main__":
    main()
