"""Vectorised range coding of integer symbols with indexed integer tables (constriction).

Every symbol carries a table index. The encoder groups the symbols by index (stable order) and
codes each group with one call on that group's categorical model, so the Python cost is per table,
not per symbol. A value outside its table's support is coded as the table's escape symbol and its
exact value goes to a raw side stream, so every int64 round-trips.

The categorical models are rebuilt on both sides from the stored integer frequencies only; the
conversion to constriction's fixed-point model is a deterministic function of those integers, so
no float computed from the network can make the decoder's model differ from the encoder's.

Sub-stream layout (see docs/bitstream.md, "Entropy sub-streams")::

    varint  W                      number of 32-bit range-coder words
    W x u32 little-endian          the range-coded symbols, table 0's group first
    varint* escape values          zigzag LEB128, one per escape symbol, in coding order

constriction is imported by the functions that code, not with this module: training builds and
trains the entropy models without ever range-coding, so a machine that only trains needs no range
coder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import nn

from canfvc_codec.errors import BitstreamError, CanfvcError

# Frequencies of every table sum to 2**TABLE_PRECISION. constriction's categorical models work in
# 24-bit fixed point, so 24 bits loses nothing and keeps the probability floor (one unit) far below
# the mass of any useful symbol.
TABLE_PRECISION = 24
MAX_VARINT_BYTES = 10  # a uint64 in LEB128
_WORD_BYTES = 4
# Symbols below this magnitude take the int32 fast path; the margin keeps ``symbol - min`` of any
# table inside int32.
_INT32_SAFE = 2**31 - 2**20
# Rounded latents are clipped here before the int64 conversion (see round_to_symbols).
MAX_SYMBOL = 2**62

RANGE_CODER_PACKAGE = "constriction"


class RangeCoderMissing(CanfvcError):
    """Range coding was asked for on a machine without the constriction package."""


def range_coder() -> ModuleType:
    """The constriction package, imported on first use (see the module docstring)."""
    try:
        import constriction
    except ImportError:
        raise RangeCoderMissing(
            f"range coding needs the {RANGE_CODER_PACKAGE} package "
            f"(pip install {RANGE_CODER_PACKAGE})"
        ) from None
    return constriction


@dataclass(frozen=True)
class IntegerTables:
    """A set of integer probability tables, flat.

    Table ``k`` is ``freqs[offsets[k]:offsets[k + 1]]``. Its entry ``i`` (except the last) is the
    frequency of the value ``mins[k] + i``; the last entry is the escape symbol for every value
    outside ``[mins[k], mins[k] + len - 2]``. Frequencies are >= 1 and sum to 2**TABLE_PRECISION.
    """

    freqs: np.ndarray  # int32
    offsets: np.ndarray  # int64, num_tables + 1
    mins: np.ndarray  # int64, num_tables

    @property
    def num_tables(self) -> int:
        return len(self.mins)

    @property
    def escape_codes(self) -> np.ndarray:
        """Per table, the coded value of its escape symbol (= number of regular entries)."""
        return np.diff(self.offsets) - 1

    def check(self) -> None:
        """Raise ValueError unless the tables are well formed."""
        offsets = self.offsets
        if offsets.ndim != 1 or len(offsets) != self.num_tables + 1 or offsets[0] != 0:
            raise ValueError("table offsets do not match the number of tables")
        if self.offsets[-1] != len(self.freqs) or np.any(np.diff(self.offsets) < 2):
            raise ValueError("every table needs at least one value and the escape symbol")
        if np.any(self.freqs < 1):
            raise ValueError("table frequencies must be positive")
        if self.num_tables == 0:
            return
        sums = np.add.reduceat(self.freqs.astype(np.int64), self.offsets[:-1])
        if np.any(sums != 1 << TABLE_PRECISION):
            raise ValueError(f"table frequencies must sum to 2**{TABLE_PRECISION}")

    def models(self) -> list:
        """One constriction categorical model per table, built from the integers alone."""
        categorical = range_coder().stream.model.Categorical
        freqs = self.freqs.astype(np.float64)  # exact: every frequency is below 2**53
        return [
            categorical(freqs[self.offsets[k] : self.offsets[k + 1]], perfect=False)
            for k in range(self.num_tables)
        ]

    def bits(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        """Ideal cost in bits of ``symbols`` under these tables (escapes' raw bytes excluded)."""
        idx = np.asarray(indexes, dtype=np.int64).ravel()
        shifted = np.asarray(symbols, dtype=np.int64).ravel() - self.mins[idx]
        escape = self.escape_codes[idx]
        codes = np.where((shifted < 0) | (shifted >= escape), escape, shifted)
        freqs = self.freqs[self.offsets[idx] + codes].astype(np.float64)
        return float(np.sum(TABLE_PRECISION - np.log2(freqs)))


def pmf_to_freqs(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies (>= 1, summing to 2**TABLE_PRECISION) approximating a pmf.

    Each entry gets one unit plus its share of the rest, rounded down; the units left over go to
    the entries with the largest remainders, so the total is exact.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim != 1 or len(pmf) < 1 or not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise ValueError("pmf must be a non-empty vector of finite non-negative numbers")
    total = 1 << TABLE_PRECISION
    if len(pmf) > total // 2:
        raise ValueError("table too long for the table precision")
    if pmf.sum() <= 0:  # no information (a degenerate density): code uniformly
        pmf = np.ones_like(pmf)
    share = pmf / pmf.sum() * (total - len(pmf))
    freqs = 1 + np.floor(share).astype(np.int64)
    left = total - int(freqs.sum())
    if left > 0:
        freqs[np.argsort(-(share - np.floor(share)), kind="stable")[:left]] += 1
    return freqs.astype(np.int32)


def tables_from_pmfs(pmfs: list[np.ndarray], mins: np.ndarray) -> IntegerTables:
    """Build :class:`IntegerTables` from per-table pmfs whose last entry is the escape mass."""
    freqs = [pmf_to_freqs(p) for p in pmfs]
    offsets = np.zeros(len(freqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in freqs])
    flat = np.concatenate(freqs) if freqs else np.zeros(0, dtype=np.int32)
    tables = IntegerTables(flat.astype(np.int32), offsets, np.asarray(mins, dtype=np.int64))
    tables.check()
    return tables


# ---------------------------------------------------------------------------------------------
# Escapes: zigzag LEB128 varints, vectorised.


def zigzag(values: np.ndarray) -> np.ndarray:
    """int64 -> uint64, small magnitudes first: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(values: np.ndarray) -> np.ndarray:
    u = np.asarray(values, dtype=np.uint64)
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def encode_varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of each uint64, concatenated."""
    v = np.asarray(values, dtype=np.uint64).ravel()
    if v.size == 0:
        return b""
    nbytes = np.ones(v.shape, dtype=np.int64)
    for j in range(1, MAX_VARINT_BYTES):
        nbytes += v >= np.uint64(1 << (7 * j))
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for j in range(int(nbytes.max())):
        sel = nbytes > j
        chunk = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (nbytes[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (chunk | more).astype(np.uint8)
    return out.tobytes()


def decode_varints(data: bytes | np.ndarray) -> np.ndarray:
    """All unsigned LEB128 values of ``data`` (uint64); BitstreamError on a malformed one."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    if b.size == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise BitstreamError("entropy stream: truncated escape value")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > MAX_VARINT_BYTES or np.any(b[ends[lengths == MAX_VARINT_BYTES]] > 1):
        raise BitstreamError("entropy stream: escape value out of range")
    values = np.zeros(ends.size, dtype=np.uint64)
    for j in range(int(lengths.max())):
        sel = lengths > j
        values[sel] |= (b[starts[sel] + j].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * j)
    return values


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise BitstreamError("entropy stream: truncated length")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise BitstreamError("entropy stream: length too long")


# ---------------------------------------------------------------------------------------------
# Indexed coding.


def _check_indexes(indexes: np.ndarray, tables: IntegerTables) -> np.ndarray:
    idx = np.asarray(indexes).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= tables.num_tables):
        raise ValueError("table index out of range")
    # Small unsigned indexes let numpy's stable argsort use a linear-time radix sort.
    return idx.astype(np.uint8 if tables.num_tables <= 256 else np.int64, copy=False)


def _group_codes(
    group: np.ndarray, minimum: int, escape_code: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coded values (int32) of one table's symbols and the mask of the escaped ones."""
    unsigned = np.uint32 if group.dtype == np.int32 else np.uint64
    codes = (group - group.dtype.type(minimum)).view(unsigned)
    # Negative offsets wrap to huge unsigned values, so one minimum maps both out-of-range sides
    # to the escape code.
    np.minimum(codes, unsigned(escape_code), out=codes)
    escaped = codes == escape_code
    # Every code is now at most the escape code (< 2**31): the int32 view is the same numbers.
    return (codes.view(np.int32) if unsigned is np.uint32 else codes.astype(np.int32)), escaped


def _symbol_array(symbols: np.ndarray) -> np.ndarray:
    """Flat int32 symbols where they fit (the fast path), int64 otherwise."""
    sym = np.asarray(symbols).ravel()
    if sym.dtype == np.int32:
        return sym
    sym = sym.astype(np.int64, copy=False)
    # Keep a margin so that subtracting a table minimum cannot overflow int32.
    if sym.size and max(-int(sym.min()), int(sym.max())) < _INT32_SAFE:
        return sym.astype(np.int32)
    return sym


def encode_indexed(symbols: np.ndarray, indexes: np.ndarray, tables: IntegerTables) -> bytes:
    """Range-code integer ``symbols``, each with the table ``indexes[i]``; any int64 round-trips."""
    sym = _symbol_array(symbols)
    idx = _check_indexes(indexes, tables)
    if sym.shape != idx.shape:
        raise ValueError("symbols and indexes differ in size")
    order = np.argsort(idx, kind="stable")
    counts = np.bincount(idx, minlength=tables.num_tables)
    sym = sym[order]
    escape_codes = tables.escape_codes
    encoder = range_coder().stream.queue.RangeEncoder()
    models = tables.models()
    escape_values = []
    start = 0
    for k in np.flatnonzero(counts):
        end = start + int(counts[k])
        codes, escaped = _group_codes(sym[start:end], tables.mins[k], escape_codes[k])
        encoder.encode(codes, models[k])
        if escaped.any():
            escape_values.append(sym[start:end][escaped].astype(np.int64))
        start = end
    words = encoder.get_compressed().astype("<u4")
    escapes = np.concatenate(escape_values) if escape_values else np.zeros(0, dtype=np.int64)
    header = encode_varints(np.array([words.size], dtype=np.uint64))
    return header + words.tobytes() + encode_varints(zigzag(escapes))


def decode_indexed(
    data: bytes, indexes: np.ndarray, tables: IntegerTables, *, narrow: bool = False
) -> np.ndarray:
    """Inverse of :func:`encode_indexed`: int64 symbols shaped like ``indexes``.

    With ``narrow`` the result is int32 whenever every value fits (saves a pass for callers that
    convert to float anyway).

    A stream that does not fit (bad lengths, missing or extra escape values) raises
    :class:`BitstreamError`; this function never allocates more than the indexes ask for plus
    the size of ``data``.
    """
    shape = np.shape(indexes)
    idx = _check_indexes(indexes, tables)
    num_words, pos = _read_varint(data, 0)
    if num_words * _WORD_BYTES > len(data) - pos:
        raise BitstreamError("entropy stream: word count exceeds the stream")
    words = np.frombuffer(data, dtype="<u4", count=num_words, offset=pos).astype(np.uint32)
    escape_bytes = data[pos + num_words * _WORD_BYTES :]
    if idx.size == 0:
        if num_words or escape_bytes:
            raise BitstreamError("entropy stream: data for an empty latent")
        return np.zeros(shape, dtype=np.int64)

    order = np.argsort(idx, kind="stable")
    counts = np.bincount(idx, minlength=tables.num_tables)
    # Regular values are table entries plus the table's minimum: int32 suffices for real tables,
    # which halves the memory traffic of the final scatter. Escaped values are patched in after.
    escape_codes = tables.escape_codes
    reach = int(np.abs(tables.mins).max() + escape_codes.max()) if tables.num_tables else 0
    values = np.empty(idx.size, dtype=np.int32 if reach < _INT32_SAFE else np.int64)
    escaped = np.empty(idx.size, dtype=bool)
    decoder = range_coder().stream.queue.RangeDecoder(words)
    models = tables.models()
    start = 0
    try:
        for k in np.flatnonzero(counts):
            end = start + int(counts[k])
            group = decoder.decode(models[k], int(counts[k]))
            np.equal(group, escape_codes[k], out=escaped[start:end])
            np.add(group, tables.mins[k], out=values[start:end], casting="unsafe")
            start = end
    except Exception as exc:  # constriction rejects words no encoder can produce (AssertionError)
        raise BitstreamError(f"entropy stream: {exc}") from None

    escape_values = unzigzag(decode_varints(escape_bytes))
    escaped_at = np.flatnonzero(escaped)
    if escape_values.size != escaped_at.size:
        raise BitstreamError("entropy stream: escape values do not match the escape symbols")
    out = np.empty_like(values)
    out[order] = values
    fits = escaped_at.size == 0 or max(-int(escape_values.min()), int(escape_values.max())) < 2**31
    if not (narrow and fits):
        out = out.astype(np.int64, copy=False)
    if escaped_at.size:
        out[order[escaped_at]] = escape_values
    return out.reshape(shape)


def round_to_symbols(centred: torch.Tensor) -> np.ndarray:
    """``round(centred)`` as an integer array: int32 when every value fits, else int64.

    Values are clipped to ±2**62 (a latent that large is meaningless, and the clip keeps the int64
    conversion defined); a non-finite value is a bug upstream and raises ValueError.
    """
    rounded = torch.round(centred.detach()).cpu()
    if rounded.numel() == 0:
        return np.zeros(tuple(rounded.shape), dtype=np.int32)
    low, high = torch.aminmax(rounded)
    peak = max(-float(low), float(high))
    if not math.isfinite(peak):
        raise ValueError("cannot code a non-finite latent")
    if peak < _INT32_SAFE:
        return rounded.to(torch.int32).numpy()
    return rounded.double().clamp_(-MAX_SYMBOL, MAX_SYMBOL).to(torch.int64).numpy()


# ---------------------------------------------------------------------------------------------
# Modules that carry their tables as buffers.


class TabledModel(nn.Module):
    """Base of the entropy models: integer tables held as buffers, so they are in the state dict.

    The buffers' sizes depend on the tables, so loading resizes them to what the state dict holds.
    """

    def __init__(self) -> None:
        super().__init__()
        # In training, price with noise but hand on the value the decoder reconstructs (see the
        # subclasses' ``forward``); set for one training step by the phases that fit entropy
        # models, whose predicted means move the reconstruction.
        self.rounded_in_training = False
        self.register_buffer("table_freqs", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("table_offsets", torch.zeros(1, dtype=torch.int64))
        self.register_buffer("table_mins", torch.zeros(0, dtype=torch.int64))

    def set_tables(self, tables: IntegerTables) -> None:
        tables.check()
        device = self.table_freqs.device
        self.table_freqs = torch.from_numpy(tables.freqs.astype(np.int32)).to(device)
        self.table_offsets = torch.from_numpy(tables.offsets.astype(np.int64)).to(device)
        self.table_mins = torch.from_numpy(tables.mins.astype(np.int64)).to(device)

    def tables(self) -> IntegerTables:
        if self.table_mins.numel() == 0:
            raise RuntimeError(f"{type(self).__name__} has no tables; call update() first")
        return IntegerTables(
            self.table_freqs.cpu().numpy(),
            self.table_offsets.cpu().numpy(),
            self.table_mins.cpu().numpy(),
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in ("table_freqs", "table_offsets", "table_mins"):
            key = prefix + name
            if key in state_dict:
                current = getattr(self, name)
                setattr(self, name, torch.empty_like(current).resize_(state_dict[key].shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
