"""Fuzzing the reader and the decoder in-process: whatever the bytes, a CanfvcError or a video.

Two corpora of real streams (real frames, the tiny model) are mutated by hypothesis:

- raw byte mutations of whole files (flips, overwrites, insertions, deletions, truncations):
  they exercise the container's checks, which must reject them before the networks run;
- structural mutations re-serialised with valid CRCs (header fields, frame types, sub-stream
  counts, bytes and lengths of the entropy sub-streams, reconstruction CRCs): they get past the
  container and exercise the entropy decoders, the networks on garbage latents and the GOP logic.

Each case goes through :func:`canfvc_codec.codec.decode_video` exactly as the CLI calls it. The
invariant: it returns, or raises a :class:`CanfvcError`; nothing else, and it never hangs: each
case decodes no more frames than its stream can hold, and a timeout guards against a hung case.
The container's own mutation tests live in ``tests/test_bitstream.py``; these go further in.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canfvc_codec import codec
from canfvc_codec.bitstream import (
    MATRICES,
    TYPE_END,
    CvcReader,
    FrameRecord,
    StreamHeader,
    encode_header,
    encode_record,
)
from canfvc_codec.codec import Decoder, decode_video, encode_video
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.errors import CanfvcError, ModelError
from canfvc_codec.io import Frame, VideoInfo, VideoWriter, open_reader, open_writer
from canfvc_codec.networks.video import References
from canfvc_codec.numerics import DECODER_DTYPE
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model
from tests.conftest import real_yuv_frames

MODEL = "random-tiny"
# Raw cases come in batches (one hypothesis example = RAW_BATCH files), which spreads
# hypothesis's own cost per example over several cases.
RAW_BATCH = 10
RAW_EXAMPLES = 920
STRUCTURAL_CASES = 800  # RAW_EXAMPLES * RAW_BATCH + STRUCTURAL_CASES >= 10**4
# The seeds hold 3 frames; a structural case duplicates at most 3 records, and a raw mutation
# cannot make a record with a valid CRC. A case that decodes more frames is looping.
MAX_FRAMES_PER_CASE = 6
# A guard against a hung case, far above what a whole fuzz test takes (~20 s on two busy
# cores); the test fails at it instead of waiting forever. Not a speed target.
HANG_TIMEOUT_S = 200
# Header sizes the structural fuzzer tries: small, so that each case stays fast; the huge sizes
# a header may claim are tested on their own in tests/test_reliability_cli.py.
MAX_FUZZ_SIDE = 160

FUZZ_SETTINGS = {
    "deadline": None,  # no timing per case: hangs are caught by HANG_TIMEOUT_S
    "database": None,
    "derandomize": True,  # the same cases on every run
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


class NullWriter(VideoWriter):
    """Accepts frames and drops them: the fuzzer needs the decoder, not the disk."""

    def _write(self, frame: Frame) -> None:
        pass

    def _finish(self) -> None:
        pass

    def _discard(self) -> None:
        pass


def _encode(tmp: Path, width: int, height: int, count: int, gop: int) -> bytes:
    info = VideoInfo(width, height, 25, 1, 8, "bt709", False, count)
    clip = tmp / f"clip_{width}x{height}_{gop}.y4m"
    with open_writer(str(clip), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 40, count, width, height):
            writer.write(Frame(y, u, v))
    sink = io.BytesIO()
    options = EncodeOptions(lmbda=1024.0, gop=gop, adaptive_intra=False, model=MODEL, device="cpu")
    with open_reader(str(clip)) as reader:
        encode_video(reader, sink, options, progress=False)
    return sink.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[bytes]:
    """Seeds: I P P (first P and conditional P), and I P I at a size no multiple of 64."""
    tmp = tmp_path_factory.mktemp("corpus")
    return [_encode(tmp, 64, 64, 3, 0), _encode(tmp, 80, 48, 3, 2)]


class ReadyModel:
    """The model already in float64 and eval mode: the decoder's ``.to``/``.eval`` cost nothing.

    Converting a model walks all its modules (~10 ms for tiny), more than a whole fuzz case.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model.to(DECODER_DTYPE).eval()

    def to(self, *args, **kwargs) -> ReadyModel:
        return self

    def eval(self) -> ReadyModel:
        return self

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class MemoDecoder(Decoder):
    """The real decoder, except that frames of the unmodified seeds come from a cache.

    A mutation in frame k of a seed would otherwise decode frames 0..k-1 again, identically,
    every time; the frames that matter (the mutated one and those after it) are decoded for real.
    The cache is keyed on everything decoding depends on: geometry, λ and every record so far.
    """

    cache: dict = {}
    recording = False
    frames = 0  # frames decoded (cached or not) since the count was last reset

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._key: tuple = (self.width, self.height, self.rates)

    def decode(self, frame_type: str, streams: list[bytes]) -> torch.Tensor:
        MemoDecoder.frames += 1
        key = (self._key, frame_type, tuple(streams))
        if key in self.cache:
            output, refs, self._unrounded = self.cache[key]
            # A copy of the lists: resolving a tie replaces the newest frame in place.
            self.refs = References(list(refs.frames), list(refs.flows))
        else:
            output = super().decode(frame_type, streams)
            if self.recording:
                self.cache[key] = (output, self.refs, self._unrounded)
        self._key = key
        return output


@pytest.fixture(scope="module")
def decode(corpus):
    """decode_video as the CLI calls it, with the model loaded once and the seeds cached."""
    model, model_id = random_model("tiny")
    ready = ReadyModel(model)
    saved = codec.load_model_by_id, codec.Decoder

    def load(wanted: bytes, device: str = "cpu"):
        if wanted != model_id:
            raise ModelError(f"no model with id {wanted.hex()}")
        return ready, model_id

    codec.load_model_by_id, codec.Decoder = load, MemoDecoder
    outcomes: Counter[str] = Counter()

    def run(data: bytes) -> None:
        MemoDecoder.frames = 0
        try:
            decode_video(io.BytesIO(data), NullWriter, device="cpu", progress=False)
            outcomes["decoded"] += 1
        except CanfvcError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message
            outcomes[re.sub(r"[0-9a-f]{16}|\d+", "N", message)[:60]] += 1
        assert MemoDecoder.frames <= MAX_FRAMES_PER_CASE

    MemoDecoder.recording = True
    for data in corpus:  # real decoding, filling the cache
        decode_video(io.BytesIO(data), NullWriter, device="cpu", progress=False)
    MemoDecoder.recording = False
    yield run
    codec.load_model_by_id, codec.Decoder = saved
    MemoDecoder.cache.clear()
    print(f"fuzz: {sum(outcomes.values())} cases; outcomes:")
    for message, count in outcomes.most_common():
        print(f"  {count:6d}  {message}")


def test_seeds_decode(corpus, decode):
    for data in corpus:
        frames = decode_video(io.BytesIO(data), NullWriter, device="cpu", progress=False)
        assert frames["frames"] == 3 == len(list(CvcReader(io.BytesIO(data))))


# ----------------------------------------------------------------------------- raw bytes

_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
)


def _apply(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, what in edits:
        if not buf:
            break
        pos = where % len(buf)
        if kind == "flip":
            buf[pos] ^= 1 << what
        elif kind == "set":
            buf[pos] = what
        elif kind == "insert":
            buf[pos:pos] = what
        elif kind == "delete":
            del buf[pos : pos + what]
        else:
            del buf[pos:]
    return bytes(buf)


@pytest.mark.timeout(HANG_TIMEOUT_S)
@settings(max_examples=RAW_EXAMPLES, **FUZZ_SETTINGS)
@given(
    seed=st.integers(0, 1),
    batch=st.lists(st.lists(_edit, min_size=1, max_size=4), min_size=RAW_BATCH, max_size=RAW_BATCH),
)
def test_raw_byte_mutations(corpus, decode, seed, batch):
    for edits in batch:
        decode(_apply(corpus[seed], edits))


# ----------------------------------------------------------------------------- structure


def _header_edit():
    side = st.integers(1, MAX_FUZZ_SIDE)
    return st.one_of(
        st.builds(lambda w, h: {"width": w, "height": h}, side, side),
        st.builds(lambda d: {"bit_depth": d}, st.integers(8, 16)),
        st.builds(
            lambda m, r: {"matrix": m, "full_range": r}, st.sampled_from(MATRICES), st.booleans()
        ),
        st.builds(lambda g: {"gop": g}, st.integers(0, 5)),
        st.builds(lambda n: {"frame_count": n}, st.integers(0, 6)),
        st.builds(
            lambda lm: {"rates": Rates.uniform(lm)},
            st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
        ),
        st.builds(lambda i: {"model_id": i}, st.binary(min_size=8, max_size=8)),
    )


_stream_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 12), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 12)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("replace"), st.binary(max_size=64)),
)

_record_edit = st.one_of(
    st.tuples(st.just("stream"), st.integers(0, 7), _stream_edit),
    st.tuples(st.just("type"), st.sampled_from(["I", "P"])),
    st.tuples(st.just("drop_stream"), st.integers(0, 7)),
    st.tuples(st.just("add_stream"), st.binary(max_size=32)),
    st.tuples(st.just("crc"), st.integers(0, 2**32 - 1)),
    st.tuples(
        st.just("drop_record"),
    ),
    st.tuples(
        st.just("duplicate_record"),
    ),
)


def _edit_stream(stream: bytes, edit) -> bytes:
    kind = edit[0]
    if kind == "flip" and stream:
        buf = bytearray(stream)
        buf[edit[1] % len(buf)] ^= 1 << edit[2]
        return bytes(buf)
    if kind == "truncate":
        return stream[: edit[1] % (len(stream) + 1)]
    if kind == "extend":
        return stream + edit[1]
    if kind == "replace":
        return edit[1]
    return stream


def _edit_records(records: list[FrameRecord], index: int, edit) -> list[FrameRecord]:
    records = [dataclasses.replace(r, streams=list(r.streams)) for r in records]
    target = records[index % len(records)]
    kind = edit[0]
    if kind == "stream" and target.streams:
        k = edit[1] % len(target.streams)
        target.streams[k] = _edit_stream(target.streams[k], edit[2])
    elif kind == "type":
        target.frame_type = edit[1]
    elif kind == "drop_stream" and target.streams:
        del target.streams[edit[1] % len(target.streams)]
    elif kind == "add_stream":
        target.streams.append(edit[1])
    elif kind == "crc":
        target.recon_crc = edit[1]
    elif kind == "drop_record":
        records.remove(target)
    elif kind == "duplicate_record":
        records.insert(index % len(records), dataclasses.replace(target))
    return records


def _serialise(header: StreamHeader, records: list[FrameRecord]) -> bytes:
    """Header and records with valid CRCs, without the writer's consistency checks."""
    parts = [encode_header(header)]
    parts += [encode_record(r, header.max_payload) for r in records]
    return b"".join(parts) + bytes([TYPE_END])


@pytest.mark.timeout(HANG_TIMEOUT_S)
@settings(max_examples=STRUCTURAL_CASES, **FUZZ_SETTINGS)
@given(
    seed=st.integers(0, 1),
    header_edits=st.lists(_header_edit(), max_size=1),
    record_edits=st.lists(st.tuples(st.integers(0, 2), _record_edit), min_size=1, max_size=3),
)
def test_structural_mutations_with_valid_crcs(corpus, decode, seed, header_edits, record_edits):
    reader = CvcReader(io.BytesIO(corpus[seed]))
    header, records = reader.header, list(reader)
    for changes in header_edits:
        header = dataclasses.replace(header, **changes)
    for index, edit in record_edits:
        if records:
            records = _edit_records(records, index, edit)
    decode(_serialise(header, records))
