"""Exactness of the indexed range coder, its escapes and the float → table-index step."""

from __future__ import annotations

import numpy as np
import pytest

from canfvc_codec.entropy.coder import (
    TABLE_PRECISION,
    decode_indexed,
    decode_varints,
    encode_indexed,
    encode_varints,
    pmf_to_freqs,
    unzigzag,
    zigzag,
)
from canfvc_codec.entropy.gaussian import gaussian_tables
from canfvc_codec.entropy.scale_table import (
    SCALE_LEVELS,
    SCALE_TABLE,
    scale_to_index_np,
)
from canfvc_codec.errors import BitstreamError

TABLES = gaussian_tables()
INT64 = np.iinfo(np.int64)


def _random_latent(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    indexes = rng.integers(0, SCALE_LEVELS, size=shape)
    symbols = np.round(rng.normal(size=shape) * SCALE_TABLE[indexes]).astype(np.int64)
    return symbols, indexes


def _roundtrip(symbols: np.ndarray, indexes: np.ndarray) -> np.ndarray:
    data = encode_indexed(symbols, indexes, TABLES)
    decoded = decode_indexed(data, indexes, TABLES)
    assert decoded.shape == np.shape(indexes)
    return decoded


@pytest.mark.parametrize(
    "shape", [(0,), (0, 3, 4), (1,), (1, 1, 1, 1), (7,), (2, 3, 5, 7), (1, 16, 9, 11), (3000,)]
)
def test_random_latents_roundtrip(shape):
    rng = np.random.default_rng(sum(shape) + len(shape))
    symbols, indexes = _random_latent(rng, shape)
    np.testing.assert_array_equal(_roundtrip(symbols, indexes), symbols)


def test_every_table_index_over_and_beyond_its_support():
    indexes, symbols = [], []
    for k in range(TABLES.num_tables):
        low = int(TABLES.mins[k])
        high = low + int(TABLES.escape_codes[k]) - 1
        values = np.arange(low - 3, high + 4)  # the whole support and three values past each end
        symbols.append(values)
        indexes.append(np.full(values.shape, k))
    symbols_all, indexes_all = np.concatenate(symbols), np.concatenate(indexes)
    # Interleave the tables so that grouping really reorders the symbols.
    perm = np.random.default_rng(1).permutation(symbols_all.size)
    np.testing.assert_array_equal(
        _roundtrip(symbols_all[perm], indexes_all[perm]), symbols_all[perm]
    )


@pytest.mark.parametrize("index", [0, 31, 63])
def test_outliers_roundtrip(index):
    values = np.array(
        [0, 10**6, -(10**6), 10**9, -(10**12), 2**31, -(2**31) - 1, 2**62, INT64.max, INT64.min]
    )
    rng = np.random.default_rng(index)
    symbols = rng.permutation(np.concatenate([values, rng.integers(-3, 4, size=200)]))
    indexes = np.full(symbols.shape, index)
    np.testing.assert_array_equal(_roundtrip(symbols, indexes), symbols)


def test_all_symbols_escaped():
    symbols = np.full(5000, 10**6, dtype=np.int64) * np.where(np.arange(5000) % 2, 1, -1)
    indexes = np.arange(5000) % SCALE_LEVELS
    np.testing.assert_array_equal(_roundtrip(symbols, indexes), symbols)


def test_int32_and_int64_inputs_give_the_same_stream():
    rng = np.random.default_rng(2)
    symbols, indexes = _random_latent(rng, (4000,))
    assert encode_indexed(symbols.astype(np.int32), indexes, TABLES) == encode_indexed(
        symbols, indexes, TABLES
    )


def test_tables_are_normalised_integers():
    sums = np.add.reduceat(TABLES.freqs.astype(np.int64), TABLES.offsets[:-1])
    assert np.all(sums == 1 << TABLE_PRECISION)
    assert TABLES.freqs.min() >= 1
    assert TABLES.num_tables == SCALE_LEVELS
    # Wider scales need wider tables.
    assert np.all(np.diff(TABLES.escape_codes) >= 0)


def test_varints_and_zigzag_roundtrip():
    values = np.array([0, 1, -1, 63, -64, 64, 2**31, INT64.max, INT64.min, -(10**6)])
    encoded = encode_varints(zigzag(values))
    np.testing.assert_array_equal(unzigzag(decode_varints(encoded)), values)
    assert encode_varints(np.array([0, 127, 128, 300], dtype=np.uint64)) == bytes(
        [0x00, 0x7F, 0x80, 0x01, 0xAC, 0x02]
    )


@pytest.mark.parametrize("data", [b"\x80", b"\xff" * 11, b"\x80" * 9 + b"\x02"])
def test_bad_varints_raise(data):
    with pytest.raises(BitstreamError):
        decode_varints(data)


def test_damaged_streams_give_bitstream_error_or_integers():
    rng = np.random.default_rng(3)
    symbols, indexes = _random_latent(rng, (500,))
    symbols[::50] = 10**6  # some escapes
    data = encode_indexed(symbols, indexes, TABLES)
    damaged = [data[:cut] for cut in range(len(data))]
    for _ in range(300):
        mutated = bytearray(data)
        mutated[rng.integers(len(data))] = rng.integers(256)
        damaged.append(bytes(mutated))
    damaged.append(data + b"\x05")
    errors = 0
    for stream in damaged:
        try:
            decoded = decode_indexed(stream, indexes, TABLES)
        except BitstreamError:
            errors += 1
        else:
            assert decoded.shape == indexes.shape and decoded.dtype == np.int64
    assert errors > 0


def test_decode_rejects_a_word_count_beyond_the_stream():
    with pytest.raises(BitstreamError):
        decode_indexed(encode_varints(np.array([2**40], dtype=np.uint64)), np.zeros(3, int), TABLES)


def test_scale_to_index_is_nearest_in_log_domain():
    rng = np.random.default_rng(4)
    scales = np.exp(rng.uniform(np.log(0.01), np.log(1000.0), 20000))
    expected = np.argmin(np.abs(np.log(scales)[:, None] - np.log(SCALE_TABLE)[None, :]), axis=1)
    np.testing.assert_array_equal(scale_to_index_np(scales), expected)
    np.testing.assert_array_equal(scale_to_index_np(SCALE_TABLE), np.arange(SCALE_LEVELS))


def test_float32_path_equals_float64_math():
    rng = np.random.default_rng(5)
    boundaries = np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:]).astype(np.float32)
    edge = np.concatenate(
        [
            boundaries,
            np.nextafter(boundaries, np.float32(0)),
            np.nextafter(boundaries, np.float32(np.inf)),
            np.array([0.0, -0.0, -1.0, 1e-38, 1e38, np.inf, -np.inf], dtype=np.float32),
        ]
    )
    random = np.exp(rng.uniform(np.log(1e-3), np.log(1e4), 50000)).astype(np.float32)
    for values in (edge, random):
        np.testing.assert_array_equal(
            scale_to_index_np(values), scale_to_index_np(values.astype(np.float64))
        )
    assert scale_to_index_np(np.array([np.nan], dtype=np.float32))[0] < SCALE_LEVELS


@pytest.mark.parametrize(
    "pmf", [[1.0, 0.0], [0.0, 0.0, 0.0], [1e-30, 1.0, 1e-30, 0.5], list(np.linspace(0, 1, 5000))]
)
def test_pmf_to_freqs_is_exactly_normalised(pmf):
    freqs = pmf_to_freqs(np.array(pmf))
    assert freqs.min() >= 1 and int(freqs.astype(np.int64).sum()) == 1 << TABLE_PRECISION
    assert np.argmax(freqs) == np.argmax(pmf)


def test_range_coder_overhead_over_the_tables_is_small():
    rng = np.random.default_rng(6)
    symbols, indexes = _random_latent(rng, (100_000,))
    ideal = TABLES.bits(symbols, indexes)
    real = 8 * len(encode_indexed(symbols, indexes, TABLES))
    assert abs(real - ideal) <= 0.001 * ideal + 64 * 8, (real, ideal)
