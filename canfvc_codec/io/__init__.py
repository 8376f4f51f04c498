"""Video in and out: raw YUV, Y4M, anything ffmpeg reads; colour conversion in :mod:`.color`.

The contract: :func:`open_reader` and :func:`open_writer` (:mod:`.video`) pick a reader or
writer by name and format; :class:`VideoInfo` and :class:`Frame` (:mod:`.frame`) describe and
hold the 4:2:0 planes; outputs are written under temporary names and committed together
(:mod:`.output`), and compared with the inputs by file identity (:mod:`.identity`).
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
