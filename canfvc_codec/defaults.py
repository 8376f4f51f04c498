"""Facts that the command line, the encoder, training and evaluation share, defined once here.

Free of torch, so that the command line can show them in its help without loading the networks.
"""

from __future__ import annotations

# The λ values the latent gains are learned at (canfvc_codec/nn/gain.py): one model serves every
# rate, trained over [first, last]. Outside it the gains are clamped to the nearest end.
ANCHOR_LAMBDAS = (256.0, 512.0, 1024.0, 2048.0)
DEFAULT_LAMBDA = 1024.0
# The I-frames' default λ is this many times λ (canfvc_codec.encoder.options.auto_intra_lambda).
INTRA_LAMBDA_FACTOR = 2.0
# The configuration `canfvc train` builds, and the model a plain `canfvc encode` uses: the
# published model of that configuration (models are named after their configuration).
DEFAULT_CONFIG = "small"
DEFAULT_MODEL = DEFAULT_CONFIG
# The numerical path of the networks (canfvc_codec.numerics): the hidden option --numeric-path,
# or this variable, picks another one for the determinism tests (docs/determinism.md).
NUMERIC_PATH_ENV = "CANFVC_NUMERIC_PATH"
DEFAULT_NUMERIC_PATH = "default"
# Where the networks run; auto: CUDA when there is one.
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"


def trained_lambda_range(anchors: tuple[float, ...] = ANCHOR_LAMBDAS) -> str:
    """The trained λ range as the help and the warnings write it: ``256..2048``."""
    return f"{anchors[0]:g}..{anchors[-1]:g}"
