"""Reader and writer base classes: frame-range selection, streaming, clean-up on failure."""

from __future__ import annotations

from collections.abc import Iterator

from canfvc_codec.errors import InputError
from canfvc_codec.io.frame import Frame, VideoInfo, check_frame


class VideoReader:
    """Frames of one video, read one at a time (memory does not grow with the video's length).

    Subclasses set ``info`` and implement :meth:`_read_frame` (and :meth:`_skip` when they can
    seek). ``start`` frames are skipped, then at most ``frames`` frames are yielded.
    """

    info: VideoInfo
    #: short name of the input format, shown by ``canfvc info``
    format_name = "video"

    def __init__(self, name: str, start: int = 0, frames: int | None = None) -> None:
        if start < 0:
            raise InputError(f"{name}: --start must be 0 or more, not {start}")
        if frames is not None and frames < 1:
            raise InputError(f"{name}: --frames must be 1 or more, not {frames}")
        self.name = name
        self.start = start
        self.frames = frames
        self._started = False

    def _read_frame(self) -> Frame | None:
        """The next frame, or None at the end of the video."""
        raise NotImplementedError

    def _skip(self, count: int) -> int:
        """Skip ``count`` frames; returns how many were really there. Override to seek."""
        for skipped in range(count):
            if self._read_frame() is None:
                return skipped
        return count

    def _selected_count(self, total: int) -> int:
        """How many frames iteration yields from a video of ``total`` frames."""
        if total == 0:
            raise InputError(f"{self.name}: the video has no frames")
        if self.start >= total:
            raise InputError(f"{self.name}: --start {self.start} is past the end ({total} frames)")
        remaining = total - self.start
        return remaining if self.frames is None else min(self.frames, remaining)

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("a VideoReader can be iterated only once")
        self._started = True
        skipped = self._skip(self.start)
        if skipped < self.start:
            raise InputError(
                f"{self.name}: --start {self.start} is past the end ({skipped} frames)"
            )
        count = 0
        while self.frames is None or count < self.frames:
            frame = self._read_frame()
            if frame is None:
                break
            count += 1
            yield frame
        if count == 0:
            raise InputError(f"{self.name}: the video has no frames")

    def close(self) -> None:
        """Release files and processes; safe to call more than once."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()


class VideoWriter:
    """Writes frames as they come. Leaving the ``with`` block normally completes the output;
    an exception removes whatever was written (:meth:`abort`)."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.frames_written = 0
        self.closed = False

    def write(self, frame: Frame) -> None:
        if self.closed:
            raise ValueError("write to a closed VideoWriter")
        check_frame(frame, self.info)
        self._write(frame)
        self.frames_written += 1

    def _write(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output and move it into place; safe to call more than once."""
        if not self.closed:
            self.closed = True
            self._finish()

    def abort(self) -> None:
        """Remove the partial output; safe to call more than once."""
        if not self.closed:
            self.closed = True
            self._discard()

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
