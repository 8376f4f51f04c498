"""A binary entropy model for the ±1 latents, with a temporal context, and its range coder.

Differential modulation turns a still latent into a regular pattern of bits over frames (``c = 0``
gives +1, -1, +1, ...), which costs a full bit per symbol under an i.i.d. model but almost nothing
once the bits of the previous frames are known. So the probability of each bit is a learned table
indexed by its channel and by the bits at the same position in the previous ``context`` frames
(each one -1, +1 or "before the group", hence ``3**context`` entries per channel).

Training uses :meth:`BinaryEntropyModel.forward`, whose likelihoods are differentiable in both the
table and the bits (through the straight-through quantiser). Real coding goes through
constriction's range coder with a Bernoulli model per bit; the probabilities are first turned into
integers (:meth:`update`) so that decoding depends on integers only. constriction is imported
only by the methods that code, so training needs no range coder.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..entropy.coder import range_coder
from ..errors import BitstreamError
from .binary import bits_to_symbols, symbols_to_bits

# Fixed-point precision of the coding probabilities: P(+1) = table / 2**PROB_BITS.
PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
# Context value of a position before the first frame of the group.
CONTEXT_MISSING = 2
CONTEXT_STATES = 3
# Lower bound of the training likelihoods, so that log2 never sees 0.
LIKELIHOOD_BOUND = 1e-9
# Frame axis of the (N, T, C, H, W) latents.
FRAME_DIM = 1
CHANNEL_DIM = 2
WORD_BYTES = 4  # constriction emits 32-bit words


class BinaryEntropyModel(nn.Module):
    """P(bit = +1 | channel, bits of the previous ``context`` frames); latents (N, T, C, H, W)."""

    def __init__(self, channels: int, context: int = 2) -> None:
        super().__init__()
        if channels < 1 or context < 0:
            raise ValueError("channels must be positive and context non-negative")
        self.channels = channels
        self.context = context
        self.logits = nn.Parameter(torch.zeros(channels, CONTEXT_STATES**context))
        # Integer P(+1) per (channel, context), built by update(); empty until then.
        self.register_buffer("prob_table", torch.zeros(0, dtype=torch.int64))

    def context_index(self, bits: Tensor) -> Tensor:
        """Context of every bit: its previous bits in base 3, newest lowest (int64, same shape)."""
        states = bits_to_symbols(bits.detach())
        index = torch.zeros_like(states)
        for lag in range(self.context, 0, -1):
            previous = torch.full_like(states, CONTEXT_MISSING)
            if lag < states.shape[FRAME_DIM]:
                previous[:, lag:] = states[:, :-lag]
            index = index * CONTEXT_STATES + previous
        return index

    def _table_logits(self, index: Tensor) -> Tensor:
        """Logit of +1 for every bit, looked up by channel and context index."""
        n, t, c, h, w = index.shape
        flat = self.logits.unsqueeze(0).unsqueeze(0)  # (1, 1, C, K)
        gathered = torch.gather(flat.expand(n, t, c, -1), 3, index.reshape(n, t, c, h * w))
        return gathered.reshape(n, t, c, h, w)

    def forward(self, bits: Tensor) -> Tensor:
        """Likelihood of each ±1 bit under the model (same shape), bounded below."""
        self._check_shape(bits)
        logits = self._table_logits(self.context_index(bits))
        return torch.sigmoid(bits * logits).clamp_min(LIKELIHOOD_BOUND)

    def update(self) -> None:
        """Build the integer probability table used by the coder from the learned logits."""
        with torch.no_grad():
            p_one = torch.sigmoid(self.logits.detach().to(torch.float64))
            table = torch.round(p_one * PROB_ONE).clamp(1, PROB_ONE - 1).to(torch.int64)
        self.prob_table = table

    def _coding_probabilities(self, index: Tensor) -> np.ndarray:
        """P(+1) of each bit in (N, C, H, W) order for one frame, exact float64 from the table."""
        if self.prob_table.numel() == 0:
            raise RuntimeError("BinaryEntropyModel.update() must run before coding")
        n, c, h, w = index.shape
        table = self.prob_table.unsqueeze(0).expand(n, -1, -1)  # (N, C, K)
        p = torch.gather(table, 2, index.reshape(n, c, h * w))
        return p.reshape(-1).numpy().astype(np.float64) / PROB_ONE

    def estimated_bits(self, bits: Tensor) -> float:
        """Bits the range coder should spend on ``bits`` with the integer table."""
        self._check_shape(bits)
        index = self.context_index(bits)
        total = 0.0
        for t in range(bits.shape[FRAME_DIM]):
            p_one = self._coding_probabilities(index[:, t])
            ones = bits_to_symbols(bits[:, t]).reshape(-1).numpy() == 1
            total += float(-np.log2(np.where(ones, p_one, 1.0 - p_one)).sum())
        return total

    def compress(self, bits: Tensor) -> bytes:
        """Range-code ±1 bits (N, T, C, H, W), frame after frame."""
        self._check_shape(bits)
        index = self.context_index(bits)
        symbols = bits_to_symbols(bits.detach())
        constriction = range_coder()
        encoder = constriction.stream.queue.RangeEncoder()
        model = constriction.stream.model.Bernoulli(perfect=False)
        for t in range(bits.shape[FRAME_DIM]):
            frame_symbols = symbols[:, t].reshape(-1).numpy().astype(np.int32)
            encoder.encode(frame_symbols, model, self._coding_probabilities(index[:, t]))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decompress(self, data: bytes, shape: tuple[int, int, int, int, int]) -> Tensor:
        """Decode the bits of :meth:`compress`; ``shape`` is (N, T, C, H, W)."""
        if len(data) % WORD_BYTES:
            raise BitstreamError("binary latent stream is not a whole number of 32-bit words")
        n, t_frames, c, h, w = shape
        if c != self.channels:
            raise BitstreamError(
                f"binary latent stream has {c} channels, the model has {self.channels}"
            )
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        constriction = range_coder()
        decoder = constriction.stream.queue.RangeDecoder(words)
        model = constriction.stream.model.Bernoulli(perfect=False)
        bits = torch.zeros(shape, dtype=torch.float32)
        for t in range(t_frames):
            # The context of frame t only reads frames < t, which are already decoded.
            index = self.context_index(bits[:, : t + 1])[:, t]
            decoded = decoder.decode(model, self._coding_probabilities(index))
            frame = torch.from_numpy(decoded.astype(np.int64)).reshape(n, c, h, w)
            bits[:, t] = symbols_to_bits(frame)
        return bits

    def _check_shape(self, bits: Tensor) -> None:
        if bits.dim() != 5 or bits.shape[CHANNEL_DIM] != self.channels:
            raise ValueError(
                f"expected bits of shape (N, T, {self.channels}, H, W), got {tuple(bits.shape)}"
            )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, context={self.context}"
