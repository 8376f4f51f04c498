"""Video in and out: raw YUV, Y4M, anything ffmpeg reads; colour conversion in :mod:`.color`.

See ``docs/internals.md`` for the contract: :func:`open_reader`, :func:`open_writer`,
:class:`VideoInfo`, :class:`Frame`.
"""

from canfvc_codec.io.base import VideoReader, VideoWriter
from canfvc_codec.io.frame import Frame, VideoInfo, parse_fps, parse_size
from canfvc_codec.io.output import AtomicOutput, check_output_path, open_sink
from canfvc_codec.io.video import check_video_output, open_reader, open_writer

__all__ = [
    "AtomicOutput",
    "Frame",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "check_output_path",
    "check_video_output",
    "open_reader",
    "open_sink",
    "open_writer",
    "parse_fps",
    "parse_size",
]
