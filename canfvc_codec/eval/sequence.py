"""The reference frames of a config's sequence, as every evaluation tool reads them.

``canfvc eval`` and ``python -m canfvc_codec.lab.estimate`` both read a sequence here: its frames
through :func:`canfvc_codec.io.open_reader`, down-scaled by ``spec.downscale`` with the area filter
(each output sample the mean of a ``factor`` x ``factor`` block of its plane, rounded half up), and
the size checked against the config's. For an exact factor this is what ffmpeg's
``scale=...:flags=area`` gives, and what training's ``_area_downscale`` does to RGB frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from canfvc_codec.errors import InputError
from canfvc_codec.eval.config import SequenceSpec
from canfvc_codec.io import Frame, VideoInfo, open_reader
from canfvc_codec.io.frame import CHROMA_SUBSAMPLING


def area_downscale(frame: Frame, factor: int) -> Frame:
    """Each plane of a 4:2:0 frame with every ``factor`` x ``factor`` block averaged."""
    if factor == 1:
        return frame
    return Frame(*(_average_blocks(plane, factor) for plane in (frame.y, frame.u, frame.v)))


def _average_blocks(plane: np.ndarray, factor: int) -> np.ndarray:
    height, width = plane.shape[0] // factor, plane.shape[1] // factor
    blocks = plane.reshape(height, factor, width, factor).astype(np.int64)
    area = factor * factor
    return ((blocks.sum(axis=(1, 3)) + area // 2) // area).astype(plane.dtype)


def downscaled_info(info: VideoInfo, factor: int, name: str) -> VideoInfo:
    """``info`` with each side divided by ``factor``; InputError when 4:2:0 cannot take it."""
    step = factor * CHROMA_SUBSAMPLING  # the down-scaled chroma planes need whole blocks too
    if info.width % step or info.height % step:
        raise InputError(
            f"{name}: {info.width}x{info.height} cannot be down-scaled by {factor} in 4:2:0 "
            f"(each side must be a multiple of {step})"
        )
    return dataclasses.replace(info, width=info.width // factor, height=info.height // factor)


@contextmanager
def open_sequence(spec: SequenceSpec, frames: int) -> Iterator[tuple[VideoInfo, Iterator[Frame]]]:
    """The info and the first ``frames`` frames of ``spec`` from ``spec.start``, down-scaled.

    The frames are read one at a time while the ``with`` block lasts. InputError when the size
    differs from the config's.
    """
    # Size and bit depth describe raw files; other inputs say it themselves (the size is checked).
    raw_only = {"size": spec.size, "bit_depth": spec.bit_depth} if spec.is_raw else {}
    with open_reader(
        str(spec.path), fps=spec.fps, start=spec.start, frames=frames, **raw_only
    ) as reader:
        info, scaled = reader.info, ""
        if spec.downscale > 1:
            info = downscaled_info(info, spec.downscale, spec.name)
            scaled = f" down-scaled by {spec.downscale}"
        if spec.size is not None and (info.width, info.height) != spec.size:
            raise InputError(
                f"{spec.name}: {spec.path.name}{scaled} is {info.width}x{info.height}, "
                f"the config says {spec.size[0]}x{spec.size[1]}"
            )
        yield info, (area_downscale(frame, spec.downscale) for frame in reader)
