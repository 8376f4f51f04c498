"""Numerics of the decoder path, and the alternative numerical paths that test them.

Why this module exists: the decoder picks each latent's entropy-coding table from a σ that a
floating-point network computes (hyper-synthesis, temporal prior, fusion), fed by decoded
reference frames and flows. Another device, BLAS, memory layout or thread count sums the same
products in another order and moves σ by about one unit in the last place. In float32 (ε ≈ 1e-7)
that flips the table of some σ in every few frames of video and the rest of the stream decodes to
garbage; in float64 (ε ≈ 1e-16) a flip needs a σ within ~1e-15 (relative) of one of 63 fixed
boundaries, about 1e-14 per value. So everything the decoder computes runs in
:data:`DECODER_DTYPE`, and the reference buffer is rounded to 8-bit levels, which resets the
~1e-15 differences at every frame; a sample that sits on a rounding tie is settled by the frame's
reconstruction CRC (:func:`resolve_tie`). ``docs/determinism.md`` has the analysis and figures.

The :class:`NumericPath` s change how PyTorch computes the same float operations on one CPU
(oneDNN on or off, channels-last memory layout, one thread, PyTorch's float64 convolutions instead
of :mod:`canfvc_codec.nn.stripes`' shifted products), which is how the determinism harness
imitates "another platform" without one.

:class:`Numerics` is how the codec is told: the numeric type and the path, built from options
(``canfvc encode|decode --numeric-path``, hidden, or ``$CANFVC_NUMERIC_PATH``, read by the
command line) and passed to the encoder and the decoder, which prepare their model with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch

from canfvc_codec.defaults import DEFAULT_NUMERIC_PATH
from canfvc_codec.errors import UsageError
from canfvc_codec.networks.video import VideoModel

# The numeric type of every network the decoder runs, in the decoder and in the encoder's
# reconstruction loop alike. It is part of the bitstream format: a stream decodes bit-exactly only
# with the type it was encoded with (the per-frame reconstruction CRC says when it did not).
DECODER_DTYPE = torch.float64
DECODER_DTYPE_NAME = "float64"
DTYPES = {"float32": torch.float32, DECODER_DTYPE_NAME: DECODER_DTYPE}
DEFAULT_PATH = DEFAULT_NUMERIC_PATH


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown numeric type {name!r} ({', '.join(DTYPES)})") from None


@dataclass(frozen=True)
class NumericPath:
    """One way of computing the networks on a CPU; see the module docstring."""

    name: str
    description: str
    mkldnn: bool = True  # oneDNN convolutions (float32 only; float64 never uses them)
    channels_last: bool = False  # NHWC weights, hence NHWC activations and other kernels
    threads: int | None = None  # intra-op threads; None keeps the process's setting
    library_convolutions: bool = False  # float64: PyTorch's unfolding convolution everywhere


NUMERIC_PATHS: dict[str, NumericPath] = {
    path.name: path
    for path in (
        NumericPath(DEFAULT_PATH, "PyTorch's defaults"),
        NumericPath("mkldnn-off", "oneDNN disabled: ATen's own convolutions", mkldnn=False),
        NumericPath("channels-last", "weights and activations in NHWC layout", channels_last=True),
        NumericPath("threads-1", "one intra-op thread (other reduction splits)", threads=1),
        NumericPath(
            "library-conv",
            "PyTorch's float64 convolutions instead of shifted products",
            library_convolutions=True,
        ),
    )
}


def get_numeric_path(name: str) -> NumericPath:
    try:
        return NUMERIC_PATHS[name]
    except KeyError:
        known = ", ".join(NUMERIC_PATHS)
        raise UsageError(f"unknown numeric path {name!r} (known: {known})") from None


@contextmanager
def numeric_path(path: NumericPath) -> Iterator[None]:
    """Run the block under ``path``'s process-wide switches (oneDNN, thread count), restored on
    exit."""
    mkldnn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = path.mkldnn
    if path.threads is not None:
        torch.set_num_threads(path.threads)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Numerics:
    """How the codec computes its networks: the numeric type (float64 by default, part of the
    stream: a stream decodes only with the type it was encoded with) and the numerical path
    (:data:`NUMERIC_PATHS`). Built from options and passed to the encoder and the decoder."""

    dtype: torch.dtype = DECODER_DTYPE
    path: NumericPath = NUMERIC_PATHS[DEFAULT_PATH]

    @classmethod
    def from_options(cls, dtype: str = DECODER_DTYPE_NAME, path: str = DEFAULT_PATH) -> Numerics:
        """From the names the options give; a UsageError for an unknown one."""
        return cls(resolve_dtype(dtype), get_numeric_path(path))

    def prepare(self, model: VideoModel, device: torch.device) -> VideoModel:
        """``model`` (in place) on ``device`` in :attr:`dtype`, in eval mode, computing large
        frames in bounded memory, with the memory layout and convolutions of :attr:`path`.

        Channels-last weights are enough: a convolution with NHWC weights returns NHWC
        activations, which carry the layout through the rest of the network.
        """
        if self.path.channels_last:
            model.to(memory_format=torch.channels_last)
        model.use_library_convolutions(self.path.library_convolutions)
        return model.to(device=device, dtype=self.dtype).eval().compute_in_stripes()

    def switches(self) -> AbstractContextManager[None]:
        """The process-wide switches of :attr:`path`, for the time the networks run."""
        return numeric_path(self.path)


# ---------------------------------------------------------------------------------------------
# Rounding ties of the reference frames, resolved by the reconstruction CRC

# A reference sample rounds differently on two machines only if its value lies within their
# difference (~1e-12 code values in float64) of a rounding tie. Samples this close to a tie are
# the candidates; at ~6 M samples per 1080p frame a frame has one with probability ~1e-2.
TIE_EPSILON = 1e-9
MAX_TIE_CANDIDATES = 8


def near_ties(unrounded: torch.Tensor, peak: float) -> torch.Tensor:
    """Indices (rows of ``nonzero``) of samples of ``unrounded`` (in [0, 1] units, clamped) whose
    value times ``peak`` lies within :data:`TIE_EPSILON` of a rounding tie."""
    scaled = unrounded.clamp(0.0, 1.0).double() * peak
    fraction = scaled - torch.floor(scaled)
    return ((fraction - 0.5).abs() < TIE_EPSILON).nonzero()


def resolve_tie(
    unrounded: torch.Tensor,
    reference: torch.Tensor,
    peak: float,
    matches: Callable[[torch.Tensor], bool],
) -> torch.Tensor | None:
    """``reference`` (``unrounded`` rounded to levels of ``1/peak``) with one near-tie sample
    rounded the other way, the first for which ``matches`` holds; None when there is none.

    The encoder's reconstruction CRC (stored in every frame record) is what ``matches`` checks:
    it tells the decoder which way the encoder rounded, at no cost in bits.
    """
    candidates = near_ties(unrounded, peak)
    if len(candidates) == 0 or len(candidates) > MAX_TIE_CANDIDATES:
        return None
    for index in map(tuple, candidates.tolist()):
        level = torch.round(reference[index] * peak)
        down = float(torch.floor(unrounded[index].clamp(0.0, 1.0).double() * peak))
        other = down + 1.0 if float(level) == down else down
        candidate = reference.clone()
        candidate[index] = other / peak
        if matches(candidate):
            return candidate
    return None


# The codec's default: float64 on PyTorch's default path.
DEFAULT_NUMERICS = Numerics()
