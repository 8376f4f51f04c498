"""canfvc from Python: load a model, encode frames or a video file into a .cvc stream, decode a
stream frame by frame, and describe one as ``canfvc info`` does. ``docs/api.md`` has the guide.

    import canfvc_codec as canfvc

    model = canfvc.load_model("small")
    result = canfvc.encode(frames, model=model, lmbda=1024)    # or bitrate="500k"
    for rgb in canfvc.decode(result.stream, rgb=True):
        ...

The calls code exactly as ``canfvc encode`` and ``canfvc decode`` do (the same bytes, the same
frames), and every failure a user can cause raises a :class:`~canfvc_codec.errors.CanfvcError`
subclass with the command line's message.

This module is imported with the package (``canfvc_codec/__init__.py`` re-exports it), and the
command line imports the package: importing it must not load torch, which reads the OpenMP
settings the command line makes first (tests/test_threads.py). So the modules that load torch
(the codec, the weights, the colour conversion) are imported inside the functions that run them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

import numpy as np

from canfvc_codec.bitstream import CvcReader, StreamHeader, describe
from canfvc_codec.defaults import DEFAULT_DEVICE, DEFAULT_LAMBDA, DEFAULT_MODEL
from canfvc_codec.encoder.motion import DEFAULT_MOTION_SEARCH
from canfvc_codec.encoder.presets import DEFAULT_PRESET, refine_steps
from canfvc_codec.encoder.schedule import DEFAULT_GOP, DEFAULT_INTRA_CHOICE
from canfvc_codec.errors import BitstreamError, InputError, UsageError
from canfvc_codec.hevc import DEFAULT_INTRA_CODER
from canfvc_codec.io import VideoInfo, VideoReader, open_reader
from canfvc_codec.io.frame import (
    DEFAULT_FPS,
    DEFAULT_MATRIX,
    MATRICES,
    Frame,
    check_bit_depth,
    check_geometry,
)
from canfvc_codec.io.output import AtomicOutput
from canfvc_codec.ratecontrol import RateTarget, encode_to_rate, rate_target

if TYPE_CHECKING:
    import torch

    from canfvc_codec.codec import LoadedModel
    from canfvc_codec.encoder.options import EncodeOptions
    from canfvc_codec.networks.video import VideoModel

__all__ = [
    "Decoding",
    "EncodeResult",
    "Frame",
    "FrameResult",
    "Model",
    "decode",
    "encode",
    "info",
    "load_model",
]

# What encode() takes as one frame: YUV 4:2:0 planes (a Frame or a (y, u, v) tuple) or an RGB
# picture (H, W, 3), each a numpy array or a torch tensor.
Array: TypeAlias = "np.ndarray | torch.Tensor"
FrameInput: TypeAlias = "Frame | tuple[Array, Array, Array] | Array"
# Where a stream comes from: its bytes, a path, or a binary file open for reading.
StreamSource: TypeAlias = "bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO"
# Where encode() puts the stream: nowhere (returned as bytes), a path, or a binary file.
StreamOutput: TypeAlias = "str | os.PathLike[str] | BinaryIO | None"

FRAMES_NAME = "frames"  # how messages name frames given as arrays
TEN_BIT = 10
EIGHT_BIT = 8
# The bit depth that integer samples hold: uint16 holds 10-bit samples, as canfvc's frames do.
SAMPLE_BITS = {np.dtype(np.uint8): EIGHT_BIT, np.dtype(np.uint16): TEN_BIT}
YUV_PLANES = 3
RGB_CHANNELS = 3


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True, eq=False)
class Model:
    """A model loaded once, for any number of encodes and decodes; ``id`` is the 8-byte id (in
    hex) that the header of every stream it codes names."""

    name: str
    id: str
    anchor_lambdas: tuple[float, ...]  # the λ it was trained at; the range of --bitrate's search
    _network: VideoModel = field(repr=False)

    def loaded(self) -> LoadedModel:
        """A copy of the networks for one encode or decode, which prepares them in place."""
        import copy

        return copy.deepcopy(self._network), bytes.fromhex(self.id)


def load_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL) -> Model:
    """The model a name (``small``, ``lite``, ``random-tiny``) or a weights file names, as
    ``--model`` finds it; :class:`~canfvc_codec.errors.ModelError` when there is none."""
    from canfvc_codec import weights

    name = os.fspath(name_or_path)
    network, model_id = weights.load_model(name, "cpu")
    return Model(name, model_id.hex(), tuple(network.config.anchor_lambdas), network)


def _model(model: str | os.PathLike[str] | Model) -> Model:
    return model if isinstance(model, Model) else load_model(model)


# ----------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class FrameResult:
    """One coded frame: its type (``"I"`` or ``"P"``), the bytes of its record and the PSNR-RGB
    of its reconstruction (dB)."""

    index: int
    type: str
    bytes: int
    psnr_rgb: float


@dataclass(frozen=True)
class EncodeResult:
    """What :func:`encode` coded. ``stream`` holds the .cvc bytes when no output was given
    (None otherwise); ``bytes``, ``bpp`` and ``kbps`` count the whole stream, headers included;
    ``psnr_rgb`` is the mean over the frames; ``lmbda``, ``motion_lmbda`` and ``intra_lmbda``
    are the rates the header stores. ``summary`` is what ``canfvc encode`` prints."""

    stream: bytes | None
    frames: list[FrameResult]
    bytes: int
    bpp: float
    kbps: float
    psnr_rgb: float
    lmbda: float
    motion_lmbda: float
    intra_lmbda: float
    intra_coder: str
    model_id: str
    summary: dict[str, Any] = field(repr=False)

    @property
    def i_frames(self) -> int:
        return sum(frame.type == "I" for frame in self.frames)

    @classmethod
    def from_summary(cls, summary: dict[str, Any], stream: bytes | None) -> EncodeResult:
        """The result of an encode whose summary (:func:`canfvc_codec.codec.encode_video`) is
        ``summary``."""
        frames = [
            FrameResult(index, entry["type"], entry["bytes"], entry["psnr"])
            for index, entry in enumerate(summary["per_frame"])
        ]
        return cls(
            stream=stream,
            frames=frames,
            bytes=summary["bytes"],
            bpp=summary["bpp"],
            kbps=summary["kbps"],
            psnr_rgb=summary["psnr_rgb"],
            lmbda=summary["lambda"],
            motion_lmbda=summary["motion_lambda"],
            intra_lmbda=summary["intra_lambda"],
            intra_coder=summary["intra_coder"],
            model_id=summary["model_id"],
            summary=summary,
        )


def encode(
    source: str | os.PathLike[str] | Iterable[FrameInput],
    output: StreamOutput = None,
    *,
    model: str | os.PathLike[str] | Model = DEFAULT_MODEL,
    lmbda: float | None = None,
    bitrate: str | float | None = None,
    bpp: float | None = None,
    motion_lmbda: float | None = None,
    intra_lmbda: float | None = None,
    gop: int = DEFAULT_GOP,
    adaptive_intra: bool = True,
    intra_choice: str = DEFAULT_INTRA_CHOICE,
    intra_coder: str = DEFAULT_INTRA_CODER,
    motion_search: str = DEFAULT_MOTION_SEARCH,
    preset: str = DEFAULT_PRESET,
    refine: int | None = None,
    refine_inter: int | None = None,
    device: str = DEFAULT_DEVICE,
    size: tuple[int, int] | None = None,
    fps: Fraction | float | str | None = None,
    bit_depth: int | None = None,
    matrix: str | None = None,
    full_range: bool | None = None,
    start: int = 0,
    frames: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> EncodeResult:
    """Encode a video into a .cvc stream, as ``canfvc encode`` does with the same options.

    ``source`` is a video file (any input ``canfvc encode`` reads) or an iterable of frames:
    YUV 4:2:0 planes, a :class:`Frame` or a tuple (y, u, v) of uint8 (8-bit) or uint16 (10-bit)
    arrays, or RGB pictures (H, W, 3): uint8 (8-bit), uint16 (10-bit samples) or float in
    [0, 1], numpy arrays or torch tensors. RGB is converted to YUV 4:2:0 at ``bit_depth``
    (default: the samples', 8 for float) with ``matrix`` and ``full_range``, as a file holds
    it. ``fps`` is the frames' rate (default 30); with a file these override what it says.

    ``output``: None returns the stream in :attr:`EncodeResult.stream`; a path is written
    whole or not at all (an existing file only with ``overwrite``); a binary file is written
    into. ``lmbda`` (default 1024), or a target rate: ``bitrate`` (bits per second, or a text
    such as ``"500k"``) or ``bpp``, met within 3 % by one λ searched over the clip; the frames
    are then coded several times (an iterable that is no sequence is held in memory). The other
    options are ``canfvc encode``'s (``canfvc encode -h``; ``model`` also takes a
    :class:`Model`). Torch's CPU threads are left as they are set.
    """
    from canfvc_codec.encoder.options import EncodeOptions

    target = rate_target(bitrate, bpp)
    if target is not None and lmbda is not None:
        raise UsageError(f"{target.option} chooses λ: give it or --lambda, not both")
    handle = _model(model)
    refine, refine_inter = refine_steps(preset, refine, refine_inter)
    options = EncodeOptions(
        lmbda=DEFAULT_LAMBDA if lmbda is None else lmbda,
        motion_lmbda=motion_lmbda,
        intra_lmbda=intra_lmbda,
        gop=gop,
        adaptive_intra=adaptive_intra,
        intra_choice=intra_choice,
        intra_coder=intra_coder,
        motion_search=motion_search,
        refine=refine,
        refine_inter=refine_inter,
        model=handle.name,
        device=device,
    )
    rate = None if fps is None else _frame_rate(fps)
    read_as = {"fps": rate, "bit_depth": bit_depth, "matrix": matrix, "full_range": full_range}
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)

        def open_video() -> AbstractContextManager[VideoReader]:
            return open_reader(path, size=size, start=start, frames=frames, **read_as)

    else:
        if size is not None:
            raise UsageError("size is for raw .yuv files; frames say their own")
        many = target is not None and not isinstance(source, Sequence)
        pictures = list(source) if many else source

        def open_video() -> AbstractContextManager[VideoReader]:
            return FrameReader(pictures, start=start, frames=frames, **read_as)

    with _stream_output(output, overwrite) as (sink, buffer):
        summary = _encode(open_video, sink, options, target, handle, progress)
    return EncodeResult.from_summary(summary, None if buffer is None else buffer.getvalue())


def _encode(
    open_video: Callable[[], AbstractContextManager[VideoReader]],
    sink: BinaryIO,
    options: EncodeOptions,
    target: RateTarget | None,
    model: Model,
    progress: bool,
) -> dict:
    from canfvc_codec.codec import encode_video

    def code(reader: VideoReader, output: BinaryIO, options: EncodeOptions, recon: Any) -> dict:
        return encode_video(reader, output, options, progress=progress, loaded=model.loaded())

    if target is None:
        with open_video() as reader:
            return code(reader, sink, options, None)
    return encode_to_rate(open_video, sink, options, target, model.anchor_lambdas, code)


def _frame_rate(fps: Fraction | float | str) -> Fraction:
    from canfvc_codec.io import parse_fps

    try:
        return fps if isinstance(fps, Fraction) else parse_fps(str(fps))
    except ValueError as err:
        raise UsageError(f"--fps: {err}") from None


@contextmanager
def _stream_output(
    output: StreamOutput, overwrite: bool
) -> Iterator[tuple[BinaryIO, io.BytesIO | None]]:
    """(where to write the stream, the buffer that returns it when ``output`` is None)."""
    if output is None:
        buffer = io.BytesIO()
        yield buffer, buffer
    elif isinstance(output, (str, os.PathLike)):
        with AtomicOutput(output, overwrite) as sink:  # complete, or not there at all
            yield sink, None  # type: ignore[misc]
    else:
        yield output, None


class FrameReader(VideoReader):
    """Frames given as arrays, read as a video file is (:func:`encode`): YUV planes pass
    through, RGB pictures are converted to YUV 4:2:0. The first frame sets the size and depth,
    which every other must have. A sized iterable (a list, an array of frames) gives the header
    its frame count, as a file does."""

    format_name = FRAMES_NAME

    def __init__(
        self,
        pictures: Iterable[FrameInput],
        *,
        fps: Fraction | None = None,
        bit_depth: int | None = None,
        matrix: str | None = None,
        full_range: bool | None = None,
        start: int = 0,
        frames: int | None = None,
    ) -> None:
        super().__init__(FRAMES_NAME, start, frames)
        if bit_depth is not None:
            check_bit_depth(bit_depth, FRAMES_NAME)
        if matrix is not None and matrix not in MATRICES:
            raise InputError(f"unknown colour matrix {matrix!r} ({' or '.join(MATRICES)})")
        self._pictures = iter(pictures)
        self._first: FrameInput | None = next(self._pictures, None)
        self._index = 0
        if self._first is None:
            raise InputError(f"{FRAMES_NAME}: the video has no frames")
        width, height, depth = _geometry(self._first, bit_depth)
        check_geometry(width, height, FRAMES_NAME)
        rate = fps or DEFAULT_FPS
        total = len(pictures) if isinstance(pictures, Sized) else None
        self.info = VideoInfo(
            width,
            height,
            rate.numerator,
            rate.denominator,
            depth,
            matrix or DEFAULT_MATRIX,
            bool(full_range),
            None if total is None else self._selected_count(total),
        )

    def _read_frame(self) -> Frame | None:
        if self._first is not None:
            picture, self._first = self._first, None
        else:
            picture = next(self._pictures, None)
        if picture is None:
            return None
        frame = _as_frame(picture, self.info, self._index)
        self._index += 1
        return frame


def _array(value: Any) -> np.ndarray:
    """A numpy array of a numpy array or a torch tensor (on any device)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _planes(picture: FrameInput) -> tuple[np.ndarray, ...] | None:
    """The (y, u, v) arrays of YUV planes; None for an RGB picture."""
    if isinstance(picture, Frame):
        return picture.y, picture.u, picture.v
    if isinstance(picture, (tuple, list)):
        if len(picture) != YUV_PLANES:
            raise InputError(f"{FRAMES_NAME}: YUV planes come as (y, u, v), not {len(picture)}")
        return tuple(_array(plane) for plane in picture)
    return None


def _geometry(picture: FrameInput, bit_depth: int | None) -> tuple[int, int, int]:
    """(width, height, bit depth) of the video whose first frame is ``picture``."""
    planes = _planes(picture)
    if planes is not None:
        depth = _sample_bits(planes[0].dtype, 0)
        if bit_depth is not None and bit_depth != depth:
            raise InputError(
                f"{FRAMES_NAME}: {planes[0].dtype} planes hold {depth}-bit samples, "
                f"not {bit_depth}-bit"
            )
        height, width = planes[0].shape[:2]
        return width, height, depth
    rgb = _array(picture)
    _check_rgb_shape(rgb, 0)
    integer = np.issubdtype(rgb.dtype, np.integer)
    depth = bit_depth or (_sample_bits(rgb.dtype, 0) if integer else EIGHT_BIT)
    return rgb.shape[1], rgb.shape[0], depth


def _sample_bits(dtype: np.dtype, index: int) -> int:
    try:
        return SAMPLE_BITS[np.dtype(dtype)]
    except KeyError:
        raise InputError(
            f"frame {index}: samples must be uint8 (8-bit), uint16 (10-bit) or, for RGB, float "
            f"in [0, 1], not {dtype}"
        ) from None


def _check_rgb_shape(rgb: np.ndarray, index: int) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != RGB_CHANNELS:
        raise InputError(
            f"frame {index}: an RGB picture is (height, width, 3), not {tuple(rgb.shape)}"
        )


def _as_frame(picture: FrameInput, info: VideoInfo, index: int) -> Frame:
    """``picture`` as the YUV 4:2:0 frame of the video ``info`` describes."""
    planes = _planes(picture)
    if planes is not None:
        width, height = info.chroma_size
        expected = ((info.height, info.width), (height, width), (height, width))
        shapes = tuple(plane.shape for plane in planes)
        dtype = np.dtype(info.dtype)
        if shapes != expected or any(plane.dtype != dtype for plane in planes):
            raise InputError(
                f"frame {index}: planes {shapes} of {planes[0].dtype} do not match the video's "
                f"{expected} of {dtype}"
            )
        if max(int(plane.max()) for plane in planes) >= 1 << info.bit_depth:
            raise InputError(f"frame {index}: samples above the {info.bit_depth}-bit range")
        return Frame(*(np.ascontiguousarray(plane) for plane in planes))
    import torch

    from canfvc_codec.io.color import rgb_to_yuv

    rgb = _array(picture)
    _check_rgb_shape(rgb, index)
    if rgb.shape[:2] != (info.height, info.width):
        raise InputError(
            f"frame {index}: {rgb.shape[1]}x{rgb.shape[0]}, not the video's "
            f"{info.width}x{info.height}"
        )
    if np.issubdtype(rgb.dtype, np.integer):
        peak = (1 << _sample_bits(rgb.dtype, index)) - 1
        if int(rgb.max()) > peak:
            raise InputError(f"frame {index}: RGB samples above {peak}, the 10-bit peak")
        unit = rgb.astype(np.float64) / peak
    else:
        unit = rgb.astype(np.float64)
        if not (unit.min() >= 0.0 and unit.max() <= 1.0):  # NaN fails too
            raise InputError(f"frame {index}: float RGB samples must be in [0, 1]")
    return rgb_to_yuv(torch.from_numpy(unit).permute(2, 0, 1), info)


# ----------------------------------------------------------------------------- decode and info


def check_stream_file(path: str) -> Path:
    """A .cvc file that exists, is a regular file and is not empty (the command line's checks,
    with its messages)."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such file")
    if not file.is_file():
        raise InputError(f"{path}: not a regular file")
    if file.stat().st_size == 0:
        raise BitstreamError("empty file (no .cvc stream)")
    return file


@contextmanager
def named_stream_errors(name: str | None) -> Iterator[None]:
    """Errors of the stream as a whole (not a .cvc file, a damaged header) name the stream
    ``name``, as the command line's do; damage in a frame names the frame."""
    try:
        yield
    except BitstreamError as err:
        if name is None or err.frame is not None:
            raise
        raise BitstreamError(f"{name}: {err}") from None


@contextmanager
def open_stream(source: StreamSource) -> Iterator[BinaryIO]:
    """``source`` as a binary file read front to back: bytes, a path (opened and closed here),
    or a binary file (left open)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise BitstreamError("empty input (no .cvc stream)")
        yield io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with named_stream_errors(path):
            with check_stream_file(path).open("rb") as handle:
                yield handle
    else:
        yield source


def info(source: StreamSource) -> dict[str, Any]:
    """A stream's header, its frames (type, bytes, sub-stream sizes, reconstruction CRC) and
    its totals (bytes, bpp, kbit/s), as ``canfvc info --json`` prints them
    (:func:`canfvc_codec.bitstream.describe`). Reads the whole stream; decodes nothing."""
    with open_stream(source) as handle:
        return describe(handle)


class Decoding(Iterator[Any]):
    """The frames of a stream, decoded one at a time as they are asked for: memory holds one
    frame and the decoder's references, never the video. ``header`` and ``video`` (size, rate,
    depth, colour) are known before the first frame. Close it (or use ``with``) to release the
    file when not iterating to the end."""

    def __init__(
        self, header: StreamHeader, video: VideoInfo, frames: Iterator[Any], files: ExitStack
    ) -> None:
        self.header = header
        self.video = video
        self._frames = frames
        self._files = files

    def __iter__(self) -> Decoding:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._frames)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._frames.close()  # type: ignore[attr-defined]
        self._files.close()

    def __enter__(self) -> Decoding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode(
    source: StreamSource,
    *,
    rgb: bool = False,
    model: str | os.PathLike[str] | Model | None = None,
    device: str = DEFAULT_DEVICE,
    start: int = 0,
    frames: int | None = None,
) -> Decoding:
    """The frames of a .cvc stream (bytes, a path or a binary file), decoded lazily, one each
    time the iterator is asked (every one checked against the encoder's CRC).

    Each frame is a :class:`Frame` of YUV 4:2:0 planes (uint8, or uint16 for 10-bit video), or
    with ``rgb`` an RGB picture (H, W, 3) of float32 in [0, 1], converted with the stream's
    matrix and range. ``start`` and ``frames`` pick the frames, as ``canfvc decode --start
    --frames``; ``model`` (a name, a path or a :class:`Model`) must be the one the stream names
    (default: found by its id). The header is read, and the model loaded, before this returns;
    damage in a frame raises :class:`~canfvc_codec.errors.BitstreamError` when that frame is
    reached (``canfvc decode`` reads a file through once before decoding; this does not).
    """
    from canfvc_codec.codec import check_range, output_info, prepare_decode

    files = ExitStack()
    try:
        handle = files.enter_context(open_stream(source))
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        with named_stream_errors(name):
            reader = CvcReader(handle)
        header = reader.header
        check_range(header, start)
        handle_model = None if model is None else _model(model)
        setup = prepare_decode(
            header,
            device,
            None if handle_model is None else handle_model.name,
            loaded=None if handle_model is None else handle_model.loaded(),
        )
    except BaseException:
        files.close()
        raise
    video = output_info(header, start, frames)
    decoded = _decoded_frames(reader, setup, video, start, frames, rgb)
    return Decoding(header, video, decoded, files)


def _decoded_frames(
    reader: CvcReader, setup: Any, video: VideoInfo, start: int, frames: int | None, rgb: bool
) -> Iterator[Any]:
    """The frames from ``start`` (at most ``frames``), each decoded when asked for; the lead-in
    from the I-frame before ``start`` decoded, not given."""
    from canfvc_codec.codec import decode_checked, past_the_end, records_from
    from canfvc_codec.io.color import yuv_to_rgb

    decoder = setup.decoder()
    given = 0
    for index, record, shown in records_from(reader, start):
        with setup.numerics.switches():
            frame = decode_checked(decoder, video, index, record)
        if not shown:
            continue
        yield np.ascontiguousarray(yuv_to_rgb(frame, video).permute(1, 2, 0)) if rgb else frame
        given += 1
        if given == frames:
            return
    if start and not given:  # a stream written to a pipe does not know its length in advance
        raise UsageError(past_the_end(start, reader.frames_read))
