"""GOP-parallel encoding and decoding: chunks of a video coded by worker processes on this
machine (``--jobs N``) or by Ray actors across machines (``--ray ADDRESS|auto``), written in
order into the one stream the serial engine would write.

Why chunks can be coded apart. An I-frame resets everything the encoder carries from frame to
frame: the references, and the intra schedule's count and run cost
(:class:`~canfvc_codec.encoder.schedule.IntraSchedule`). So an encoder started at an I-frame of the
serial encode codes the frames from there exactly as the serial encoder does (same thread count,
since the encoder's float32 side may round differently on another one: docs/encoder.md).

Why chunk boundaries are not known in advance. With adaptive intra (the default) an I-frame
chosen for a scene cut restarts the intra period, so the periodic I-frames after it move. A chunk
task therefore starts at a *guessed* I-frame and codes on until its own encoder reaches an
I-frame at or after the guessed start of the next chunk; the index of that I-frame (its ``end``)
is where the serial encode's next chunk starts. Chunks are guessed on the grid ``c + k·gop`` from
the last frame committed, ``c``; a chunk whose start turns out not to be an I-frame of the serial
encode is thrown away (or used from the first of its own I-frames that is one: two encoders that
code the same frame as an I-frame agree from there on, as at a scene cut), and the grid is
guessed again from the true boundary. Without adaptive I-frames every guess holds; each adaptive
I-frame costs the chunks in flight after it.

Memory stays bounded: the input is read once, as far ahead as the chunks in flight need (at most
``jobs`` chunks of up to ``2·gop - 1`` frames), and results are written as soon as
they are next in order. Decoding is simpler: every I-frame in the stream starts a run that
decodes alone, and runs are grouped into tasks of a few frames.

Worker processes are started with ``spawn`` (torch's thread pools do not survive ``fork``), load
the networks once each, ignore Ctrl-C (the parent stops them) and are terminated on any failure,
so that the command's output, written under a temporary name, is removed and nothing hangs.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import torch

from canfvc_codec.bitstream import INTRA, CvcReader, CvcWriter, FrameRecord, StreamHeader
from canfvc_codec.codec import (
    check_range,
    decode_checked,
    decode_video,
    encode_frame,
    encode_video,
    finish_encode,
    output_info,
    past_the_end,
    prepare_decode,
    prepare_encode,
    progress_bar,
    records_from,
)
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.errors import CanfvcError, InputError, UsageError
from canfvc_codec.io import Frame, VideoInfo, VideoReader, VideoWriter, open_reader
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics
from canfvc_codec.parallel_options import AUTO_ADDRESS, DEFAULT_JOBS

# Decode tasks queued beyond one per worker, so that a worker finishing one starts the next at
# once. Encode chunks are not queued: a guess made before the chunk ahead of it ends is more
# often wrong (measured: 65 frames coded for 32 on bikes with a queued guess, 52 without).
QUEUED_TASKS = 1
# Frames a decode task gathers at least (whole runs from an I-frame). Small, so that the runs
# share out evenly: a frame takes seconds, a task's overhead milliseconds. (Tasks of a GOP left
# one of two workers decoding 22 of bikes' 32 frames.)
MIN_DECODE_TASK_FRAMES = 4
START_METHOD = "spawn"


class WorkerFailed(CanfvcError):
    """A worker process or Ray actor died (killed, out of memory) before returning its chunk."""


# ----------------------------------------------------------------------------- threads


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int, threads: int) -> int:
    """Torch threads of each of ``jobs`` workers: ``threads`` when the user set it, else the
    cores shared out, so that the workers together do not oversubscribe the machine."""
    return threads if threads else max(1, available_cores() // jobs)


# ----------------------------------------------------------------------------- encode tasks


@dataclass(frozen=True)
class InputSource:
    """How a worker reads its chunk's frames itself (``--chunk-source path``): a file every
    worker can open, with the options and the range the user gave."""

    path: str
    reader_options: dict[str, Any]
    start: int = 0
    frames: int | None = None

    def read(self, first: int, count: int) -> Iterator[Frame]:
        """Frames ``first`` .. ``first + count - 1`` of the encode's range, fewer at its end."""
        if self.frames is not None:
            count = min(count, self.frames - first)
            if count <= 0:
                return
        read = 0
        try:
            with open_reader(
                self.path, start=self.start + first, frames=count, **self.reader_options
            ) as reader:
                for frame in reader:
                    read += 1
                    yield frame
        except InputError:
            # A chunk guessed past the end finds no frame there; the first chunk, or a chunk
            # that had frames, failed for real.
            if first == 0 or read:
                raise


@dataclass
class EncodeTask:
    """Code frames from ``start`` (an I-frame) until an I-frame at or after ``min_end``."""

    start: int
    min_end: int
    count: int  # frames from start that the task may need
    frames: list[Frame] | None = None  # those frames; None: read from the worker's source
    last: bool = False  # the frames given end the video


@dataclass
class EncodeResult:
    start: int
    end: int  # the first frame not coded: an I-frame, or the end of the video
    video_end: bool  # the video has no frame ``end``
    records: list[FrameRecord] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    intra: set[int] = field(default_factory=set)  # indexes of the I-frames coded
    decoded: list[Frame] | None = None  # what the decoder will write, when a recon is wanted

    def covers(self, index: int) -> bool:
        """Whether this chunk holds the serial encode's frames from ``index``, an I-frame of the
        serial encode: true where this chunk coded it as an I-frame too."""
        return self.start <= index < self.end and index in self.intra


class EncodeWorker:
    """One worker's encoder: the networks loaded once, a fresh encoder per chunk."""

    def __init__(
        self,
        options: EncodeOptions,
        info: VideoInfo,
        threads: int,
        source: InputSource | None,
        keep_decoded: bool,
    ) -> None:
        torch.set_num_threads(threads)
        with contextlib.redirect_stderr(io.StringIO()):  # the parent warned once already
            self.setup = prepare_encode(options, info, warnings=False)
        self.source = source
        self.keep_decoded = keep_decoded

    def run(self, task: EncodeTask) -> EncodeResult:
        setup, info = self.setup, self.setup.info
        encoder = setup.encoder()
        if task.frames is not None:
            frames: Iterator[Frame] = iter(task.frames)
        else:
            assert self.source is not None, "a task without frames needs a source"
            frames = self.source.read(task.start, task.count)
        result = EncodeResult(task.start, task.start, video_end=False)
        result.decoded = [] if self.keep_decoded else None
        with setup.numerics.switches():
            for index, frame in enumerate(frames, task.start):
                past_min_end = index >= task.min_end
                if past_min_end and encoder.schedule.intra_due():
                    return result  # the next chunk starts at this periodic I-frame
                coded = encode_frame(encoder, frame, info)
                if coded.record.frame_type == INTRA:
                    if past_min_end:
                        return result  # an adaptive I-frame: the next chunk starts here
                    result.intra.add(index)
                result.records.append(coded.record)
                result.psnr.append(coded.psnr)
                if result.decoded is not None:
                    result.decoded.append(coded.decoded)
                result.end = index + 1
        if result.end >= task.min_end and encoder.schedule.intra_due():
            # The next frame, if there is one, is a periodic I-frame: this chunk is complete.
            # Whether there is one, a task reading its frames learns from the next chunk.
            result.video_end = task.last
            return result
        # Only the video's end stops a chunk short of its next I-frame.
        if task.frames is not None:
            complete = task.last
        else:  # a source gives fewer frames than asked only at the end of the video
            complete = result.end - task.start < task.count
        if not complete:
            raise RuntimeError(f"chunk at frame {task.start}: ran out of frames before an I-frame")
        result.video_end = True
        return result


# ----------------------------------------------------------------------------- decode tasks


@dataclass
class DecodeTask:
    sequence: int  # position of the task in the output
    records: list[tuple[int, FrameRecord, bool]]  # (index, record, shown), from an I-frame


@dataclass
class DecodeResult:
    sequence: int
    frames: list[Frame]  # the shown frames, in order
    lead_in: int  # frames decoded but not shown


class DecodeWorker:
    """One worker's decoder: the networks loaded once, a fresh decoder per run of frames."""

    def __init__(
        self,
        header: StreamHeader,
        info: VideoInfo,
        device: str,
        model: str | None,
        numerics: Numerics,
        threads: int,
    ) -> None:
        torch.set_num_threads(threads)
        with contextlib.redirect_stderr(io.StringIO()):  # the parent warned once already
            self.setup = prepare_decode(header, device, model, numerics)
        self.info = info

    def run(self, task: DecodeTask) -> DecodeResult:
        decoder = self.setup.decoder()
        result = DecodeResult(task.sequence, [], 0)
        with self.setup.numerics.switches():
            for index, record, shown in task.records:
                if record.frame_type == INTRA:
                    decoder = self.setup.decoder()  # a run restarts from nothing
                decoded = decode_checked(decoder, self.info, index, record)
                if shown:
                    result.frames.append(decoded)
                else:
                    result.lead_in += 1
        return result


# ----------------------------------------------------------------------------- worker pools


class WorkerPool(Protocol):
    """Where tasks run; results come back in the order they finish."""

    workers: int
    capacity: int  # tasks that may be in flight at once (workers, and any queued)

    def submit(self, key: int, task: Any) -> None: ...

    def cancel(self, key: int) -> bool:
        """Drop a task that has not started; False when it has."""
        ...

    def in_flight(self) -> set[int]: ...

    def next_result(self) -> Any:
        """The next task to finish, as its result; its exception when it failed."""
        ...

    def close(self, abort: bool) -> None:
        """Release the workers; ``abort``: stop those still working."""
        ...


_worker: EncodeWorker | DecodeWorker | None = None  # the worker of this process (local pools)


def _start_worker(kind: type, args: tuple) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker = kind(*args)


def _started() -> None:
    """A task that returns once the worker is up."""


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Processes started in the block begin with Ctrl-C ignored (a terminal sends it to every
    process of the group; the parent stops the workers), before their initializer runs."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_task(task: Any) -> Any:
    assert _worker is not None, "the worker process was not started"
    return _worker.run(task)


class ProcessPool:
    """``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int, worker: type, args: tuple) -> None:
        self.workers = jobs
        self.capacity = jobs + QUEUED_TASKS
        self.executor = ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context(START_METHOD),
            initializer=_start_worker,
            initargs=(worker, args),
        )
        self.futures: dict[int, Future] = {}
        with _ctrl_c_ignored():  # the executor starts a process per task until it has ``jobs``
            for _ in range(jobs):
                self.executor.submit(_started)

    def submit(self, key: int, task: Any) -> None:
        self.futures[key] = self.executor.submit(_run_task, task)

    def cancel(self, key: int) -> bool:
        if self.futures[key].cancel():
            del self.futures[key]
            return True
        return False

    def in_flight(self) -> set[int]:
        return set(self.futures)

    def next_result(self) -> Any:
        done, _ = wait(self.futures.values(), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        key = next(key for key, pending in self.futures.items() if pending is future)
        del self.futures[key]
        try:
            return future.result()
        except BrokenProcessPool:
            raise WorkerFailed("a worker process died before finishing its chunk") from None

    def close(self, abort: bool) -> None:
        if abort:
            for future in self.futures.values():
                future.cancel()
            # Python 3.14 has terminate_workers(); before it the processes are only reachable
            # through the executor's table of them.
            terminate = getattr(self.executor, "terminate_workers", None)
            if terminate is not None:
                terminate()
            else:
                for process in list((self.executor._processes or {}).values()):
                    process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=abort)


class RayPool:
    """Ray actors, each a worker with ``threads`` CPUs, on the cluster at ``address`` (``auto``:
    a running cluster, else a local instance started here and stopped at the end)."""

    def __init__(self, address: str, jobs: int | None, threads: int, worker: type, args: tuple):
        try:
            import ray
        except ImportError:
            raise UsageError("--ray needs Ray: pip install 'canfvc[ray]'") from None
        self.ray = ray
        self.started_here = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="error", log_to_driver=False)
            except ConnectionError:
                if address != AUTO_ADDRESS:
                    raise UsageError(f"--ray {address}: no Ray cluster answers there") from None
                ray.init(logging_level="error", log_to_driver=False, include_dashboard=False)
                self.started_here = True
        if jobs is None:
            jobs = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        actor = ray.remote(num_cpus=threads)(worker)
        self.idle = [actor.remote(*args) for _ in range(jobs)]
        self.actors = list(self.idle)
        self.workers = self.capacity = jobs
        self.refs: dict[Any, tuple[int, Any]] = {}  # object ref -> (key, actor)

    def submit(self, key: int, task: Any) -> None:
        actor = self.idle.pop()
        self.refs[actor.run.remote(task)] = (key, actor)

    def cancel(self, key: int) -> bool:
        return False  # every task submitted is running on its actor

    def in_flight(self) -> set[int]:
        return {key for key, _ in self.refs.values()}

    def next_result(self) -> Any:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        _, actor = self.refs.pop(ready[0])
        self.idle.append(actor)
        try:
            return self.ray.get(ready[0])
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None  # the worker's own error, as a serial run raises it
            raise
        except self.ray.exceptions.RayActorError:
            raise WorkerFailed("a Ray worker died before finishing its chunk") from None

    def close(self, abort: bool) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started_here:
            self.ray.shutdown()


def open_pool(
    jobs: int | None, threads: int, ray_address: str | None, worker: type, args: tuple
) -> WorkerPool:
    if ray_address is not None:
        return RayPool(ray_address, jobs, threads, worker, args)
    return ProcessPool(jobs or DEFAULT_JOBS, worker, args)


# ----------------------------------------------------------------------------- encode


class _FrameWindow:
    """The input's frames from the last one committed to the furthest a task needs: the input
    is read once, as far as the tasks ahead need, and forgotten once written."""

    def __init__(self, reader: VideoReader) -> None:
        self.frames = iter(reader)
        self.first = 0  # index of buffer[0]
        self.buffer: list[Frame] = []
        self.total: int | None = None  # the video's frame count, once its end was read

    def read_to(self, end: int) -> None:
        while self.total is None and self.first + len(self.buffer) < end:
            frame = next(self.frames, None)
            if frame is None:
                self.total = self.first + len(self.buffer)
            else:
                self.buffer.append(frame)

    def get(self, start: int, end: int) -> list[Frame]:
        self.read_to(end)
        return self.buffer[start - self.first : end - self.first]

    def forget_before(self, index: int) -> None:
        drop = min(max(index - self.first, 0), len(self.buffer))
        del self.buffer[:drop]
        self.first += drop


def encode_parallel(
    reader: VideoReader,
    output: BinaryIO,
    options: EncodeOptions,
    *,
    jobs: int | None,
    threads: int = 0,
    ray_address: str | None = None,
    source: InputSource | None = None,
    recon: VideoWriter | None = None,
    progress: bool = True,
) -> dict:
    """:func:`~canfvc_codec.codec.encode_video`'s stream and summary, the chunks coded by
    ``jobs`` workers (None with Ray: as many as the cluster has CPUs for ``threads`` each).
    ``source``: workers read their frames from it instead of receiving them."""
    if options.gop == 0:  # one chunk: nothing to share out
        return encode_video(reader, output, options, recon=recon, progress=progress)
    started = time.perf_counter()
    info = reader.info
    setup = prepare_encode(options, info)  # checks and warnings once, and the header
    writer = CvcWriter(output, setup.header)
    gop = options.gop
    per_worker = threads_per_worker(jobs or available_cores(), threads)
    # With adaptive intra a chunk may code on until one GOP after its last I-frame.
    task_frames = gop + (gop - 1 if options.adaptive_intra else 0)
    window = None if source is not None else _FrameWindow(reader)
    results: dict[int, EncodeResult] = {}
    frames: list[dict] = []
    committed = 0  # frames written; the next is an I-frame of the serial encode
    coded = 0  # frames the workers coded, in chunks guessed wrong too
    limit: int | None = None  # no frame has this index or a later one

    def make_task(start: int) -> EncodeTask | None:
        nonlocal limit
        if window is None:
            return EncodeTask(start, start + gop, task_frames)
        chunk = window.get(start, start + task_frames)
        if window.total is not None:
            limit = window.total
        if not chunk:
            return None
        last = window.total is not None and start + len(chunk) >= window.total
        return EncodeTask(start, start + gop, task_frames, chunk, last)

    def commit(bar: Any) -> None:
        nonlocal committed
        while result := next((r for r in results.values() if r.covers(committed)), None):
            skip = committed - result.start
            decoded = result.decoded[skip:] if result.decoded is not None else None
            for offset, record in enumerate(result.records[skip:]):
                size = writer.write_frame(record)
                if recon is not None and decoded is not None:
                    recon.write(decoded[offset])
                quality = result.psnr[skip + offset]
                frames.append({"type": record.frame_type, "bytes": size, "psnr": quality})
                bar.set_postfix_str(f"{record.frame_type} {size} B {quality:.2f} dB", refresh=False)
            bar.update(result.end - committed)
            committed = result.end
            for start in [s for s, r in results.items() if r.end <= committed]:
                del results[start]
            if window is not None:
                window.forget_before(committed)

    pool = open_pool(
        jobs,
        per_worker,
        ray_address,
        EncodeWorker,
        (options, info, per_worker, source, recon is not None),
    )
    try:
        with progress_bar(info.frame_count, progress, "encode") as bar:
            while limit is None or committed < limit:
                # Guess the chunks ahead on the grid from the last boundary; drop other guesses.
                planned = [committed + k * gop for k in range(pool.workers)]
                if limit is not None:
                    planned = [start for start in planned if start < limit]
                for key in pool.in_flight() - set(planned):
                    pool.cancel(key)
                for start in planned:
                    busy = pool.in_flight()
                    if len(busy) >= pool.workers:
                        break
                    if start in busy or start in results:
                        continue
                    task = make_task(start)
                    if task is not None:
                        pool.submit(start, task)
                if limit is not None and committed >= limit:
                    break
                result: EncodeResult = pool.next_result()
                coded += len(result.records)
                if result.video_end:
                    limit = result.end if limit is None else min(limit, result.end)
                if result.end > committed:
                    results[result.start] = result
                commit(bar)
    except BaseException:
        pool.close(abort=True)
        raise
    pool.close(abort=False)
    summary = finish_encode(setup, writer, frames, started)
    # What the guesses cost: the frames coded again after adaptive I-frames moved the chunks.
    summary.update(jobs=pool.workers, coded_frames=coded)
    return summary


# ----------------------------------------------------------------------------- decode


def _decode_tasks(
    records: Iterator[tuple[int, FrameRecord, bool]], task_frames: int, frames: int | None
) -> Iterator[DecodeTask]:
    """The records grouped into tasks of whole runs (each from an I-frame), at least
    ``task_frames`` frames each; none past the ``frames`` shown that are wanted."""
    batch: list[tuple[int, FrameRecord, bool]] = []
    shown = 0
    sequence = 0
    for index, record, is_shown in records:
        if batch and record.frame_type == INTRA and len(batch) >= task_frames:
            yield DecodeTask(sequence, batch)
            sequence, batch = sequence + 1, []
        batch.append((index, record, is_shown))
        shown += is_shown
        if shown == frames:
            break
    if batch:
        yield DecodeTask(sequence, batch)


def decode_parallel(
    source: BinaryIO,
    open_output: Callable[[VideoInfo], VideoWriter],
    *,
    jobs: int | None,
    threads: int = 0,
    ray_address: str | None = None,
    device: str = "auto",
    model: str | None = None,
    progress: bool = True,
    numerics: Numerics = DEFAULT_NUMERICS,
    start: int = 0,
    frames: int | None = None,
) -> dict:
    """:func:`~canfvc_codec.codec.decode_video` with runs of frames decoded by ``jobs``
    workers; the same frames, written in order."""
    started = time.perf_counter()
    reader = CvcReader(source)
    header = reader.header
    if header.gop == 0:  # one run from the first frame: nothing to share out
        return decode_video(
            reader,
            open_output,
            device=device,
            model=model,
            progress=progress,
            numerics=numerics,
            start=start,
            frames=frames,
            started=started,
        )
    check_range(header, start)
    # A missing model fails before any output.
    prepare_decode(header, device, model, numerics)
    info = output_info(header, start, frames)
    per_worker = threads_per_worker(jobs or available_cores(), threads)
    tasks = _decode_tasks(records_from(reader, start), MIN_DECODE_TASK_FRAMES, frames)
    pool = open_pool(
        jobs,
        per_worker,
        ray_address,
        DecodeWorker,
        (header, info, device, model, numerics, per_worker),
    )
    done: dict[int, DecodeResult] = {}
    count = lead_in = written = 0
    try:
        with open_output(info) as writer, progress_bar(info.frame_count, progress, "decode") as bar:
            more = True
            while more or pool.in_flight() or done:
                while more and len(pool.in_flight()) + len(done) < pool.capacity:
                    task = next(tasks, None)
                    if task is None:
                        more = False
                    else:
                        pool.submit(task.sequence, task)
                if pool.in_flight():
                    result: DecodeResult = pool.next_result()
                    done[result.sequence] = result
                while written in done:
                    result = done.pop(written)
                    for frame in result.frames:
                        writer.write(frame)
                    count += len(result.frames)
                    lead_in += result.lead_in
                    bar.update(len(result.frames))
                    written += 1
            if start and not count:
                raise UsageError(past_the_end(start, reader.frames_read))
    except BaseException:
        pool.close(abort=True)
        raise
    pool.close(abort=False)
    return {
        "frames": count,
        "lead_in_frames": lead_in,
        "fps": (count + lead_in) / (time.perf_counter() - started),
        "width": header.width,
        "height": header.height,
        "lambda": header.rates.lmbda,
        "jobs": pool.workers,
    }
