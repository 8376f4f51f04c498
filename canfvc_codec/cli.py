"""The ``canfvc`` command line: the commands, each parsing its options, calling the library and
printing what it returns.

Option types and the option blocks that commands share are in :mod:`canfvc_codec.cli_options`,
the text reports in :mod:`canfvc_codec.cli_report`. The networks are imported by the commands
that run them, so that help and ``info`` on videos start without loading torch. ``main`` turns
user errors into one line on stderr, and a missing third-party package into one line naming it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from canfvc_codec import __version__, api
from canfvc_codec.bitstream import MAGIC as CVC_MAGIC
from canfvc_codec.bitstream import CvcReader
from canfvc_codec.cli_options import (
    AUTO,
    GENERAL_GROUP,
    INPUT_GROUP,
    PARALLEL_GROUP,
    GroupedCommand,
    at_least,
    chunk_source_option,
    device_option,
    input_options,
    intra_coder_option,
    numeric_path_option,
    overwrite_option,
    parallel_options,
    positive,
    positive_or_auto,
    preset_options,
    quiet_option,
    range_options,
    reader_options,
    threads_option,
)
from canfvc_codec.cli_report import echo_report, echo_summary, json_default, video_report
from canfvc_codec.defaults import (
    DEFAULT_LAMBDA,
    DEFAULT_MODEL,
    INTRA_LAMBDA_FACTOR,
    trained_lambda_range,
)
from canfvc_codec.encoder.motion import DEFAULT_MOTION_SEARCH, MOTION_SEARCHES
from canfvc_codec.encoder.presets import refine_steps
from canfvc_codec.encoder.schedule import DEFAULT_GOP, DEFAULT_INTRA_CHOICE, INTRA_CHOICES
from canfvc_codec.errors import BitstreamError, CanfvcError, InputError, OutputError, UsageError
from canfvc_codec.io import (
    VideoInfo,
    VideoWriter,
    check_video_output,
    open_reader,
    open_sink,
    open_writer,
)
from canfvc_codec.io.ffmpeg import PLAYABLE_CRF
from canfvc_codec.io.identity import check_distinct_files
from canfvc_codec.io.output import (
    STDIO_NAME,
    AtomicOutput,
    OutputGroup,
    check_output_path,
    silence_stdout,
)
from canfvc_codec.io.video import H264_EXTENSIONS
from canfvc_codec.parallel_options import PATH_SOURCE
from canfvc_codec.ratecontrol import (
    BITRATE_OPTION,
    RATE_TOLERANCE,
    check_rereadable,
    encode_to_rate,
    rate_target,
)
from canfvc_codec.threads import check_thread_request, cpu_threads, prepare_process

PROG = "canfvc"
CVC_SUFFIX = ".cvc"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
STDIN_NAME = "stdin"
INPUT_ROLE = "the input"
# Extensions that name a video, not a bitstream: `encode -o` given one of these is a slip.
VIDEO_SUFFIXES = (".yuv", ".y4m", ".raw", ".mp4", ".mkv", ".png", ".avi", ".mov")
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that it unwinds as on Ctrl-C: every output under
    way is removed, nothing half-written is left."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class Interrupted(BaseException):
    """Ctrl-C, carried past click (which would print a blank line of its own) to :func:`_run`."""


def _eval_command() -> click.Command:
    from canfvc_codec.eval.command import eval_command

    return eval_command


def _train_command() -> click.Command:
    from canfvc_codec.train.command import train_command

    return train_command


# Commands whose modules import much (plotting, training data), imported when they are named.
LOADED_COMMANDS: dict[str, Callable[[], click.Command]] = {
    "eval": _eval_command,
    "train": _train_command,
}


class CanfvcGroup(click.Group):
    """The top-level command: ``encode``, ``decode``, ``info``, and ``eval`` and ``train``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LOADED_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LOADED_COMMANDS:
            return LOADED_COMMANDS[cmd_name]()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None
        except BrokenPipeError:
            # click would end quietly on a closed pipe; say what happened instead.
            silence_stdout()
            raise OutputError("output pipe closed (broken pipe)") from None


def missing_dependency(err: ModuleNotFoundError) -> str | None:
    """The top-level name of the third-party module whose absence ``err`` reports; None when it
    is a part of canfvc itself (a broken installation or a bug, shown as it is)."""
    name = (err.name or "").split(".")[0]
    return None if not name or name == "canfvc_codec" else name


# ----------------------------------------------------------------------------- input and output


def _check_stdout(*outputs: str | None) -> None:
    """Binary data on a terminal helps nobody: ask for a pipe or a file instead."""
    if STDIO_NAME in outputs and sys.stdout is None:  # started with stdout closed (>&-)
        raise OutputError("stdout is closed: name an output file instead of -")
    if STDIO_NAME in outputs and sys.stdout.isatty():
        raise UsageError(
            "stdout is a terminal: pipe it into another program or name an output file"
        )


def _stdin() -> Any:
    """stdin's binary stream; a clear error when the process was started without one (<&-)."""
    if sys.stdin is None:
        raise InputError("stdin is closed: pipe a stream in or name an input file")
    if sys.stdin.isatty():
        raise InputError("stdin: nothing piped in")
    return sys.stdin.buffer


@contextmanager
def _binary_input(path: str) -> Iterator[Any]:
    """A .cvc file, or stdin for ``-``, checked whole before any work where it can be (a file).

    Errors about the stream as a whole (not a .cvc file, a damaged header, a stream cut short)
    name it; damage in a frame names the frame."""
    with api.named_stream_errors(STDIN_NAME if path == STDIO_NAME else path):
        if path == STDIO_NAME:
            source = _stdin()
            if not source.peek(1):
                raise BitstreamError("empty input (no .cvc stream)")
            yield source
            return
        with api.check_stream_file(path).open("rb") as handle:
            _check_stream_whole(handle)
            yield handle


def _check_stream_whole(handle: Any) -> None:
    """Read every record of a stream file once (lengths and CRCs, no decoding), so that a
    damaged or cut stream is refused before any output is written. A stream whose end record
    alone is missing is refused too: it cannot be told from one cut at a frame boundary
    (docs/bitstream.md)."""
    size = os.fstat(handle.fileno()).st_size
    reader = CvcReader(handle)
    while True:
        record_start = reader.position
        try:
            if reader.read_frame() is None:
                break
        except BitstreamError:
            if record_start != size:
                raise
            raise BitstreamError(
                f"the stream ends after its {reader.frames_read} frames without the end "
                "record: it may have been cut short"
            ) from None
    handle.seek(0)


# ----------------------------------------------------------------------------- commands


@click.group(
    cls=CanfvcGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  canfvc encode foreman_352x288_30.yuv -o foreman.cvc --lambda 1024
  canfvc encode clip.mp4 -o clip.cvc --gop 32 --recon rec.y4m
  ffmpeg -i clip.mkv -f yuv4mpegpipe - | canfvc encode - -o clip.cvc
  canfvc decode clip.cvc -o rec.y4m
  canfvc decode clip.cvc -o - | ffmpeg -i - -c:v libx264 rec.mp4
  canfvc info clip.cvc

Run 'canfvc COMMAND -h' for the options of each command.""",
)
@click.version_option(
    __version__, "-V", "--version", prog_name=PROG, message="%(prog)s %(version)s"
)
def cli() -> None:
    """canfvc: a learned video codec (CANF-VC, conditional augmented normalizing flows).

    Compresses video into .cvc bitstreams and decodes them back. Input is raw YUV 4:2:0,
    Y4M, or anything ffmpeg can read; output is raw YUV, Y4M, mp4/mkv (lossless H.264, or
    playable) or PNG.
    A .cvc file holds everything the decoder needs.
    """


@cli.command(
    cls=GroupedCommand,
    option_groups=[
        ("Output", ["output", "recon", "csv_path", "overwrite"]),
        (
            "Coding",
            [
                "lmbda",
                "bitrate",
                "bpp",
                "preset",
                "motion_lmbda",
                "intra_lmbda",
                "gop",
                "adaptive_intra",
                "intra_choice",
                "intra_coder",
                "motion_search",
                "refine",
                "refine_inter",
                "model",
                "device",
                "threads",
            ],
        ),
        PARALLEL_GROUP,
        INPUT_GROUP,
        GENERAL_GROUP,
    ],
    short_help="Compress a video into a .cvc bitstream.",
    epilog="""\b
INPUT is a raw 4:2:0 file (.yuv: 8-bit yuv420p or 10-bit yuv420p10le, size and
rate from --size/--fps or from a name like clip_1920x1080_50fps_10bit.yuv), a
.y4m file, anything ffmpeg reads (.mp4, .mkv, ...), or - for Y4M on stdin.

\b
Examples:
  canfvc encode BasketballDrive_1920x1080_50.yuv -o bd.cvc --lambda 2048
  canfvc encode raw.yuv --size 416x240 --fps 30 -o out.cvc --frames 96
  canfvc encode clip.mp4 -o clip.cvc --gop 12 --recon rec_%04d.png
  canfvc encode clip.mp4 -o clip.cvc --intra-coder hevc   # CANF-VC*
  ffmpeg -i clip.mkv -f yuv4mpegpipe - | canfvc encode - -o clip.cvc""",
)
@click.argument("input_path", metavar="INPUT")
@click.option(
    "-o", "--output", required=True, metavar="OUT.cvc", help="Bitstream to write (- for stdout)."
)
@click.option(
    "--recon",
    metavar="FILE",
    help="Also write the decoded video (.yuv, .y4m, .mp4, .mkv, rec_%04d.png, -).",
)
@click.option(
    "--csv",
    "csv_path",
    metavar="FILE.csv",
    help="Also write per-frame statistics: frame, type, bytes, PSNR-RGB.",
)
@overwrite_option
@click.option(
    "--lambda",
    "lmbda",
    type=float,
    default=DEFAULT_LAMBDA,
    callback=positive,
    metavar="L",
    help=f"Rate-distortion trade-off: higher is better quality, more bits; the model is trained "
    f"over {trained_lambda_range()} [default: {DEFAULT_LAMBDA:g}].",
)
@click.option(
    BITRATE_OPTION,
    metavar="RATE",
    help=f"Code at this average bitrate instead of at --lambda (bits per second: 500k, 2M), "
    f"within {RATE_TOLERANCE:.0%}: at the one λ of the trained range that meets it, found by "
    "trial encodes of the whole input (read once per trial; docs/encoder.md).",
)
@click.option(
    "--bpp",
    metavar="X",
    help="As --bitrate, at this many bits per pixel.",
)
@click.option(
    "--motion-lambda",
    "motion_lmbda",
    default=AUTO,
    show_default=True,
    callback=positive_or_auto,
    metavar="L|auto",
    help="Rate-distortion trade-off of the coded motion; auto: an eighth of --lambda, not below "
    "the model's lowest trained λ (nor above --lambda).",
)
@click.option(
    "--intra-lambda",
    "intra_lmbda",
    default=AUTO,
    show_default=True,
    callback=positive_or_auto,
    metavar="L|auto",
    help=f"Rate-distortion trade-off of the I-frames, which every later P-frame predicts from; "
    f"auto: {INTRA_LAMBDA_FACTOR:g} times --lambda, not above the model's highest trained λ (nor "
    "below --lambda).",
)
@click.option(
    "--gop",
    type=int,
    default=DEFAULT_GOP,
    show_default=True,
    callback=at_least(0),
    metavar="G",
    help="Intra period in frames; 0 codes only the first frame as intra.",
)
@click.option(
    "--adaptive-intra/--no-adaptive-intra",
    default=True,
    show_default=True,
    help="Also code a P-frame as intra where that pays in rate + λ·distortion (scene cuts, "
    "drift over a long run of P-frames); an I-frame restarts the intra period.",
)
@click.option(
    "--intra-choice",
    type=click.Choice(INTRA_CHOICES),
    default=DEFAULT_INTRA_CHOICE,
    show_default=True,
    help="How adaptive intra decides: 'frame' keeps the cheaper of I and P for the frame alone; "
    "'run' also codes I where the P-frame costs more than the mean frame since the last I-frame, "
    "counting what a fresh reference saves the frames after it. Encoder only.",
)
@intra_coder_option
@click.option(
    "--motion-search",
    type=click.Choice(MOTION_SEARCHES),
    default=DEFAULT_MOTION_SEARCH,
    show_default=True,
    help="Where the coded motion comes from: OpenCV's DIS optical flow, or the model's SPyNet. "
    "Encoder only: any stream decodes the same way.",
)
@preset_options
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    metavar="M",
    help="Model name (lite, full) or path to a weights file.",
)
@device_option
@threads_option
@parallel_options
@chunk_source_option
@input_options(with_range=True)
@quiet_option
@numeric_path_option
def encode(
    input_path: str,
    output: str,
    recon: str | None,
    csv_path: str | None,
    overwrite: bool,
    lmbda: float,
    bitrate: str | None,
    bpp: str | None,
    motion_lmbda: float | None,
    intra_lmbda: float | None,
    gop: int,
    adaptive_intra: bool,
    intra_choice: str,
    intra_coder: str,
    motion_search: str,
    preset: str,
    refine: int | None,
    refine_inter: int | None,
    model: str,
    device: str,
    threads: int,
    jobs: int | None,
    ray_address: str | None,
    chunk_source: str,
    size: tuple[int, int] | None,
    fps: Fraction | None,
    bit_depth: str | None,
    matrix: str | None,
    full_range: bool | None,
    start: int,
    frames: int | None,
    quiet: bool,
    numeric_path: str,
) -> None:
    """Compress INPUT into the bitstream OUT.cvc."""
    check_distinct_files(
        {INPUT_ROLE: input_path}, {"-o": output, "--recon": recon, "--csv": csv_path}
    )
    _check_stdout(output, recon)
    if _looks_like_bitstream(input_path):
        raise UsageError(
            f"{STDIN_NAME if input_path == STDIO_NAME else input_path}: a canfvc stream (.cvc), "
            "not a video: decode it instead (canfvc decode IN.cvc -o OUT)"
        )
    if output != STDIO_NAME:
        if Path(output).suffix.lower() in VIDEO_SUFFIXES:
            raise UsageError(
                f"{output}: -o takes the .cvc bitstream; use --recon for the decoded video"
            )
        check_output_path(output, overwrite)
    if recon is not None:
        if recon == STDIO_NAME and output == STDIO_NAME:
            raise UsageError("-o - and --recon - cannot both write to stdout")
        check_video_output(recon, overwrite)
    if csv_path is not None:
        check_output_path(csv_path, overwrite)
    target = rate_target(bitrate, bpp)
    if target is not None:
        lambda_source = click.get_current_context().get_parameter_source("lmbda")
        if lambda_source == click.core.ParameterSource.COMMANDLINE:
            raise UsageError(f"{target.option} chooses λ: give it or --lambda, not both")
        check_rereadable(input_path, STDIO_NAME)
    parallel = ray_address is not None or (jobs or 1) > 1
    if chunk_source == PATH_SOURCE and input_path == STDIO_NAME:
        raise UsageError("--chunk-source path: workers cannot read stdin; name an input file")
    check_thread_request(threads)
    if not parallel:  # with --jobs, 0 shares the cores among the workers (canfvc_codec.parallel)
        threads = cpu_threads(threads)
    from canfvc_codec.codec import encode_video
    from canfvc_codec.device import set_cpu_threads
    from canfvc_codec.encoder.options import EncodeOptions
    from canfvc_codec.numerics import Numerics

    read_as = reader_options(size, fps, bit_depth, matrix, full_range)
    with OutputGroup():  # every output appears at the end of the run, together, or none
        with open_reader(input_path, start=start, frames=frames, **read_as) as reader:
            set_cpu_threads(threads)
            refine, refine_inter = refine_steps(preset, refine, refine_inter)
            options = EncodeOptions(
                lmbda=lmbda,
                motion_lmbda=motion_lmbda,
                intra_lmbda=intra_lmbda,
                gop=gop,
                adaptive_intra=adaptive_intra,
                intra_choice=intra_choice,
                intra_coder=intra_coder,
                motion_search=motion_search,
                refine=refine,
                refine_inter=refine_inter,
                model=model,
                device=device,
                numerics=Numerics.from_options(path=numeric_path),
            )
            with open_sink(output, overwrite) as sink:
                recon_writer = (
                    open_writer(recon, reader.info, overwrite=overwrite) if recon else None
                )
                with recon_writer or nullcontext():
                    if parallel:
                        from canfvc_codec.parallel import InputSource, encode_parallel

                        source = None
                        if chunk_source == PATH_SOURCE:
                            path = str(Path(input_path).resolve())
                            source = InputSource(path, read_as, start, frames)

                        def code(reader: Any, out: Any, options: Any, recon: Any) -> dict:
                            return encode_parallel(
                                reader,
                                out,
                                options,
                                jobs=jobs,
                                threads=threads,
                                ray_address=ray_address,
                                source=source,
                                recon=recon,
                                progress=not quiet,
                            )
                    else:

                        def code(reader: Any, out: Any, options: Any, recon: Any) -> dict:
                            return encode_video(
                                reader, out, options, recon=recon, progress=not quiet
                            )

                    if target is None:
                        summary = code(reader, sink, options, recon_writer)
                    else:
                        from canfvc_codec.weights import model_config

                        def open_video() -> Any:
                            return open_reader(input_path, start=start, frames=frames, **read_as)

                        anchors = model_config(model).anchor_lambdas
                        summary = encode_to_rate(
                            open_video, sink, options, target, anchors, code, recon_writer
                        )
        if csv_path is not None:
            _write_frame_csv(csv_path, summary["per_frame"], overwrite)
    if not quiet:
        echo_summary("encoded", summary)


FRAME_CSV_FIELDS = ("frame", "type", "bytes", "psnr_rgb")


def _write_frame_csv(path: str, per_frame: list[dict], overwrite: bool) -> None:
    """One row per coded frame, as x265's --csv: what each frame cost and what it scored."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(FRAME_CSV_FIELDS)
    for index, frame in enumerate(per_frame):
        writer.writerow([index, frame["type"], frame["bytes"], f"{frame['psnr']:.4f}"])
    with AtomicOutput(path, overwrite) as out:
        out.write(rows.getvalue().encode())


@cli.command(
    cls=GroupedCommand,
    option_groups=[
        ("Output", ["output", "playable", "overwrite"]),
        ("Decoding", ["start", "frames", "device", "threads", "model"]),
        PARALLEL_GROUP,
        GENERAL_GROUP,
    ],
    short_help="Decode a .cvc bitstream into a video.",
    epilog="""\b
The output format follows OUT's extension: .yuv (raw 4:2:0), .y4m, .mp4 or
.mkv (lossless H.264, High 4:4:4 Predictive, which most players cannot play;
--playable for H.264 that they can), a PNG pattern such as rec_%04d.png, or -
for Y4M on stdout. Size, rate, bit depth and colour come from the bitstream.

\b
Examples:
  canfvc decode clip.cvc -o rec.yuv
  canfvc decode clip.cvc -o rec_%04d.png
  canfvc decode clip.cvc -o watch.mp4 --playable
  canfvc decode clip.cvc -o - | ffmpeg -i - -c:v libx265 -crf 20 rec.mp4
  cat clip.cvc | canfvc decode - -o - | ffplay -""",
)
@click.argument("input_path", metavar="IN.cvc")
@click.option("-o", "--output", required=True, metavar="OUT", help="Video to write (- for stdout).")
@click.option(
    "--playable",
    is_flag=True,
    help=f".mp4/.mkv as H.264 High profile, 8-bit 4:2:0, at CRF {PLAYABLE_CRF}: near-lossless "
    "(not bit-exact), and decoded by browsers and players, which lossless H.264 is not.",
)
@overwrite_option
@range_options(
    "Write from frame K on (decoding starts at the I-frame at or before it).",
    "Write at most N frames",
)
@device_option
@threads_option
@parallel_options
@click.option(
    "--model",
    metavar="M",
    help="Model name or weights file [default: the one the bitstream names].",
)
@quiet_option
@numeric_path_option
def decode(
    input_path: str,
    output: str,
    playable: bool,
    overwrite: bool,
    start: int,
    frames: int | None,
    device: str,
    threads: int,
    jobs: int | None,
    ray_address: str | None,
    model: str | None,
    quiet: bool,
    numeric_path: str,
) -> None:
    """Decode the bitstream IN.cvc (- for stdin) into the video OUT."""
    check_distinct_files({INPUT_ROLE: input_path}, {"-o": output})
    _check_stdout(output)
    check_video_output(output, overwrite)
    if playable and Path(output).suffix.lower() not in H264_EXTENSIONS:
        raise UsageError(f"--playable is for .mp4 and .mkv output, not {output}")
    parallel = ray_address is not None or (jobs or 1) > 1
    check_thread_request(threads)
    if not parallel:  # with --jobs, 0 shares the cores among the workers (canfvc_codec.parallel)
        threads = cpu_threads(threads)
    from canfvc_codec.codec import decode_video
    from canfvc_codec.device import set_cpu_threads
    from canfvc_codec.numerics import Numerics

    with OutputGroup(), _binary_input(input_path) as source:
        set_cpu_threads(threads)
        writers: list[VideoWriter] = []

        def open_output(info: VideoInfo) -> VideoWriter:
            writer = open_writer(output, info, overwrite=overwrite, playable=playable)
            writers.append(writer)
            return writer

        decode: Callable[..., dict] = decode_video
        options: dict[str, Any] = {}
        if parallel:
            from canfvc_codec.parallel import decode_parallel

            decode = decode_parallel
            options = {"jobs": jobs, "threads": threads, "ray_address": ray_address}
        try:
            summary = decode(
                source,
                open_output,
                device=device,
                model=model,
                progress=not quiet,
                start=start,
                frames=frames,
                numerics=Numerics.from_options(path=numeric_path),
                **options,
            )
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for writer in writers:
            writer.close()
    if not quiet:
        echo_summary("decoded", summary)


@cli.command(
    cls=GroupedCommand,
    option_groups=[("Report", ["as_json", "model_name"]), INPUT_GROUP, ("General", ["help"])],
    short_help="Describe a .cvc bitstream, a video or a model.",
    epilog="""\b
For a .cvc file: the stream header, then each frame's type, size and
sub-streams, and the totals. For a video: its format as canfvc reads it.
For --model: parameters and MACs per 1080p frame of each network.

\b
Examples:
  canfvc info clip.cvc
  canfvc info clip.cvc --json | jq .frames[0]
  canfvc info foreman_cif_30.yuv
  canfvc info --model lite""",
)
@click.argument("file", required=False, metavar="[FILE]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--model", "model_name", metavar="NAME", help="Describe a model instead of a file.")
@input_options(with_range=False)
def info(
    file: str | None,
    as_json: bool,
    model_name: str | None,
    size: tuple[int, int] | None,
    fps: Fraction | None,
    bit_depth: str | None,
    matrix: str | None,
    full_range: bool | None,
) -> None:
    """Describe FILE (a .cvc bitstream or a video; - for stdin), or a model with --model."""
    if model_name is not None:
        if file is not None:
            raise UsageError("give either FILE or --model NAME, not both")
        from canfvc_codec.networks.complexity import model_report

        report = model_report(model_name)
    elif file is None:
        raise UsageError("missing FILE (or --model NAME); see 'canfvc info -h'")
    elif _is_bitstream(file):
        with _binary_input(file) as source:
            report = api.info(source)
    else:
        if file == STDIO_NAME:
            _stdin()  # says why when there is no stdin
        read_as = reader_options(size, fps, bit_depth, matrix, full_range)
        with open_reader(file, **read_as) as reader:
            report = video_report(file, reader.format_name, reader.info)
    if sys.stdout is None:  # started with stdout closed (>&-): click would print nothing
        raise OutputError("stdout is closed: nowhere to print the report")
    if as_json:
        click.echo(json.dumps(report, indent=2, default=json_default))
    else:
        echo_report(report)


def _is_bitstream(path: str) -> bool:
    """A .cvc name, or the container's magic at the start of the file or of stdin."""
    if path == STDIO_NAME:
        return _stdin().peek(len(CVC_MAGIC))[: len(CVC_MAGIC)] == CVC_MAGIC
    return _looks_like_bitstream(path)


def _looks_like_bitstream(path: str) -> bool:
    """Like :func:`_is_bitstream`, but False where there is nothing to look at (no stdin, a
    terminal), for the video readers to say what is wrong."""
    if path == STDIO_NAME:
        if sys.stdin is None or sys.stdin.isatty():
            return False
        # A stdin that cannot be looked into without consuming it (one a host program
        # replaced, as a test harness does) is left to the video readers.
        peek = getattr(getattr(sys.stdin, "buffer", None), "peek", None)
        return peek is not None and peek(len(CVC_MAGIC))[: len(CVC_MAGIC)] == CVC_MAGIC
    file = Path(path)
    if file.suffix.lower() == CVC_SUFFIX:
        return True
    if not file.is_file():
        return False  # the video readers say what is wrong with it
    with file.open("rb") as handle:
        return handle.read(len(CVC_MAGIC)) == CVC_MAGIC


STANDARD_DESCRIPTORS = (0, 1, 2)  # stdin, stdout, stderr


def _fill_closed_standard_streams() -> None:
    """Put /dev/null on stdin, stdout or stderr where the process was started without them.

    ``sys.stdin`` (``sys.stdout``, ``sys.stderr``) stays None, so that the commands can say the
    stream is closed; but the descriptor is taken, so that no file the run opens gets it, where
    a library's message or a child process's output would land in it. Without stderr the
    messages have nowhere to go, but nothing fails for that: the exit status still tells."""
    for descriptor in STANDARD_DESCRIPTORS:
        try:
            os.fstat(descriptor)
        except OSError:
            filler = os.open(os.devnull, os.O_RDWR)
            if filler != descriptor:
                os.dup2(filler, descriptor)
                os.close(filler)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # for the rest of the process: never closed


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn user errors into ``canfvc: message`` and an exit code."""
    prepare_process()
    _fill_closed_standard_streams()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        _run(argv)
    finally:
        if previous is not None:  # a caller's handler (a test runner's) comes back
            signal.signal(signal.SIGTERM, previous)


def _error_line(err: click.ClickException) -> str:
    """click's error on one line; a command-line mistake points at the command's help."""
    message = " ".join(err.format_message().split())
    if isinstance(err, click.UsageError) and err.ctx is not None:
        message += f" (see '{err.ctx.command_path} --help')"
    return message


def _interrupted() -> None:
    """Ctrl-C: one line, as SIGTERM gives, and the shell's status for it."""
    if sys.stderr.isatty():
        click.echo(err=True)  # end the line where the terminal echoed ^C
    click.echo(f"{PROG}: interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _run(argv: list[str] | None) -> None:
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except CanfvcError as err:
        click.echo(f"{PROG}: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.NoArgsIsHelpError as err:  # click >= 8.2 (setup.cfg)
        err.show()  # the help itself, as `canfvc` alone asks
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"{PROG}: {_error_line(err)}", err=True)
        sys.exit(err.exit_code)
    except click.Abort as err:
        if isinstance(err.__cause__, KeyboardInterrupt):
            _interrupted()
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted):
        _interrupted()
    except Terminated:
        click.echo(f"{PROG}: terminated", err=True)
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:
        silence_stdout()
        click.echo(f"{PROG}: output pipe closed (broken pipe)", err=True)
        sys.exit(1)
    except ModuleNotFoundError as err:
        package = missing_dependency(err)
        if package is None:
            raise
        click.echo(
            f"{PROG}: missing dependency: the Python package {package!r} is not installed "
            "(installing canfvc with pip installs every package it needs)",
            err=True,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
