"""Shared fixtures: real frames from the project's clips, decoded straight by ffmpeg.

The fixtures deliberately avoid canfvc's own readers so that those readers can be tested against
them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import subprocess
import zlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from canfvc_codec.bitstream import (
    TYPE_END,
    CvcReader,
    encode_header,
    encode_record,
    encode_varint,
)
from canfvc_codec.datasets import clip_path

# Tiny models on small tensors: more threads only add contention on the 2-core CI machine.
torch.set_num_threads(1)
torch.manual_seed(0)

REPO = Path(__file__).resolve().parents[1]


def tool_module(name: str) -> ModuleType:
    """The script ``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=8)
def _decode_raw(clip: str, start: int, count: int, width: int, height: int, pix_fmt: str) -> bytes:
    """Raw ``pix_fmt`` bytes of ``count`` frames from ``start``, scaled to ``width``x``height``."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip_path(clip)),
        "-vf", f"select=gte(n\\,{start}),scale={width}:{height}:flags=area",
        "-fps_mode", "passthrough", "-frames:v", str(count),
        "-pix_fmt", pix_fmt, "-f", "rawvideo", "-",
    ]  # fmt: skip
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def real_yuv_frames(
    clip: str = "bikes.mp4", start: int = 0, count: int = 2, width: int = 176, height: int = 144
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` real 8-bit 4:2:0 frames as (y, u, v) planes."""
    data = _decode_raw(clip, start, count, width, height, "yuv420p")
    luma, chroma = width * height, (width // 2) * (height // 2)
    frame_size = luma + 2 * chroma
    assert len(data) == frame_size * count, "ffmpeg returned fewer frames than asked"
    frames = []
    for k in range(count):
        buf = np.frombuffer(data, np.uint8, frame_size, k * frame_size)
        y = buf[:luma].reshape(height, width)
        u = buf[luma : luma + chroma].reshape(height // 2, width // 2)
        v = buf[luma + chroma :].reshape(height // 2, width // 2)
        frames.append((y.copy(), u.copy(), v.copy()))
    return frames


def real_rgb_frames(
    clip: str = "bikes.mp4", start: int = 0, count: int = 2, width: int = 128, height: int = 128
) -> torch.Tensor:
    """``count`` real frames as an RGB tensor (count, 3, H, W) in [0, 1], decoded by ffmpeg."""
    data = _decode_raw(clip, start, count, width, height, "rgb24")
    array = np.frombuffer(data, np.uint8).reshape(count, height, width, 3)
    return torch.from_numpy(array.copy()).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture
def yuv_frames():
    return real_yuv_frames


@pytest.fixture
def rgb_frames():
    return real_rgb_frames


def rewritten_header(data: bytes, **header_changes) -> bytes:
    """The .cvc stream ``data`` with header fields changed and every CRC still valid."""
    reader = CvcReader(io.BytesIO(data))
    header = dataclasses.replace(reader.header, **header_changes)
    body = b"".join(encode_record(r, header.max_payload) for r in reader)
    return encode_header(header) + body + bytes([TYPE_END])


# Bytes of the header fields each version added at the end: version 2 the motion λ (f64), version
# 3 the intra coder (u8), version 4 the intra λ (f64).
HEADER_FIELDS_ADDED = {2: 8, 3: 1, 4: 8}


def older_version(data: bytes, version: int) -> bytes:
    """The current .cvc stream ``data`` rewritten as ``version``: the same header without the
    fields added since, under a new header length and CRC; the records unchanged."""
    length = data[4]  # a header this small has a one-byte length
    dropped = sum(size for added, size in HEADER_FIELDS_ADDED.items() if added > version)
    fields = data[5 : 5 + length - dropped]
    head = b"CVC" + bytes([version]) + encode_varint(len(fields)) + fields
    return head + zlib.crc32(head).to_bytes(4, "little") + data[5 + length + 4 :]
