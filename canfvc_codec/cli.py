"""The ``canfvc`` command line: parse options, call the library, report.

Commands that need the codec engine import it when they run, so that help, ``info`` on videos and
the I/O checks work in any build. ``main`` turns user errors into one line on stderr.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from canfvc_codec import __version__
from canfvc_codec.errors import CanfvcError, InputError, OutputError, UsageError
from canfvc_codec.hevc import DEFAULT_INTRA_CODER, INTRA_CODERS
from canfvc_codec.io import (
    VideoInfo,
    VideoWriter,
    check_video_output,
    open_reader,
    open_sink,
    open_writer,
    parse_fps,
    parse_size,
)
from canfvc_codec.io.frame import MATRICES
from canfvc_codec.io.output import STDIO_NAME, AtomicOutput, check_output_path, silence_stdout
from canfvc_codec.motion import DEFAULT_MOTION_SEARCH, MOTION_SEARCHES
from canfvc_codec.parallel_options import CHUNK_SOURCES, FRAMES_SOURCE, PATH_SOURCE
from canfvc_codec.presets import DEFAULT_PRESET, MAX_REFINE_STEPS, PRESETS, refine_steps
from canfvc_codec.schedule import DEFAULT_GOP, DEFAULT_INTRA_CHOICE, INTRA_CHOICES
from canfvc_codec.threads import MAX_CPU_THREADS

PROG = "canfvc"
CVC_MAGIC = b"CVC"
CVC_SUFFIX = ".cvc"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
DEFAULT_LAMBDA = 1024.0
DEFAULT_MODEL = "lite"
DEVICES = ("auto", "cpu", "cuda")
# Extensions that name a video, not a bitstream: `encode -o` given one of these is a slip.
VIDEO_SUFFIXES = (".yuv", ".y4m", ".raw", ".mp4", ".mkv", ".png", ".avi", ".mov")
# Commands from other parts of the package, registered only when they can be imported.
LAZY_COMMANDS = {
    "eval": ("canfvc_codec.eval.command", "eval_command"),
    "train": ("canfvc_codec.train.command", "train_command"),
}
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
HELP = "help"  # key of the help option in the option groups
HELP_COLUMN_MAX = 30


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that it unwinds as on Ctrl-C: every output under
    way is removed, nothing half-written is left."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class EngineUnavailable(CanfvcError):
    """A part of the codec that this build does not contain yet."""


def _import_engine(module: str, *names: str) -> tuple[Any, ...]:
    """``from module import names``, or a clear error when this build lacks that part."""
    try:
        loaded = importlib.import_module(module)
        return tuple(getattr(loaded, name) for name in names)
    except ImportError as err:
        if err.name is not None and not err.name.startswith("canfvc_codec"):
            raise  # a missing third-party package is an installation problem: show it as is
        raise EngineUnavailable("the codec engine is not available in this build") from None
    except AttributeError:
        raise EngineUnavailable("the codec engine is not available in this build") from None


# ----------------------------------------------------------------------------- option types


class SizeType(click.ParamType):
    name = "WxH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


class FpsType(click.ParamType):
    name = "RATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Fraction):
            return value
        try:
            return parse_fps(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _at_least(minimum: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that rejects integers below ``minimum``."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value < minimum:
            raise click.BadParameter(f"must be {minimum} or more, not {value}")
        return value

    return check


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be more than 0, not {value:g}")
    return value


AUTO = "auto"


def _positive_or_auto(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """A positive number, or None for ``auto`` (the encoder's own choice)."""
    if value == AUTO:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"must be a number or {AUTO!r}, not {value!r}") from None
    return _positive(ctx, param, number)


# ----------------------------------------------------------------------------- help layout


class GroupedCommand(click.Command):
    """A command whose options are listed in titled groups, as codec tools list them."""

    def __init__(self, *args: Any, option_groups: list[tuple[str, list[str]]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.option_groups = option_groups

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        help_option = self.get_help_option(ctx)
        records = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue  # arguments are named in the usage line and described in the text
            record = param.get_help_record(ctx)
            if record is not None:
                records[HELP if param is help_option else param.name] = record
        # One width for the option column in every group, so that the help reads as one table.
        width = min(max(len(name) for name, _ in records.values()), HELP_COLUMN_MAX)
        sections = []
        for title, names in self.option_groups:
            rows = [records.pop(name) for name in names if name in records]
            sections.append((title, rows))
        sections.append(("Other options", list(records.values())))
        for title, rows in sections:
            if rows:
                with formatter.section(title):
                    formatter.write_dl([(name.ljust(width), text) for name, text in rows])


class CanfvcGroup(click.Group):
    """The top-level command: built-in commands plus the optional ``eval`` and ``train``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        names += [name for name in LAZY_COMMANDS if self._lazy(name) is not None]
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    @staticmethod
    def _lazy(name: str) -> click.Command | None:
        if name not in LAZY_COMMANDS:
            return None
        module, attribute = LAZY_COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # click would end quietly on a closed pipe; say what happened instead.
            silence_stdout()
            raise OutputError("output pipe closed (broken pipe)") from None


# ----------------------------------------------------------------------------- shared options


def _range_options(
    start_help: str, frames_help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--start K and --frames N: the part of a video a command works on."""
    options = [
        click.option(
            "--start",
            type=int,
            default=0,
            callback=_at_least(0),
            metavar="K",
            help=start_help,
        ),
        click.option(
            "--frames",
            type=int,
            callback=_at_least(1),
            metavar="N",
            help=f"{frames_help} [default: all].",
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _input_options(with_range: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options that say how to read a video (raw files need the first ones)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--size",
                type=SizeType(),
                metavar="WxH",
                help="Frame size of raw input, e.g. 1920x1080.",
            ),
            click.option(
                "--fps",
                type=FpsType(),
                help="Frame rate: 50, 29.97 or 30000/1001 (raw input: from the name, else 30).",
            ),
            click.option(
                "--bit-depth",
                type=click.Choice(["8", "10"]),
                help="Bit depth of raw input [default: from the name, else 8].",
            ),
            click.option(
                "--matrix",
                type=click.Choice(MATRICES),
                help="YUV<->RGB matrix [default: from the input, else bt709].",
            ),
            click.option(
                "--full-range/--limited-range",
                default=None,
                help="Sample range [default: from the input, else limited].",
            ),
        ]
        if with_range:
            func = _range_options("Skip the first K frames.", "Code at most N frames")(func)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _reader_options(
    size: tuple[int, int] | None,
    fps: Fraction | None,
    bit_depth: str | None,
    matrix: str | None,
    full_range: bool | None,
) -> dict[str, Any]:
    return {
        "size": size,
        "fps": fps,
        "bit_depth": int(bit_depth) if bit_depth else None,
        "matrix": matrix,
        "full_range": full_range,
    }


INPUT_GROUP = ("Input", ["size", "fps", "bit_depth", "matrix", "full_range", "start", "frames"])
GENERAL_GROUP = ("General", ["quiet", "help"])

_overwrite_option = click.option(
    "-y", "--overwrite", is_flag=True, help="Replace output files that already exist."
)
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr."
)
_device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where the networks run (auto: cuda when available).",
)
_threads_option = click.option(
    "--threads",
    type=click.IntRange(0, MAX_CPU_THREADS),
    default=0,
    show_default=True,
    metavar="N",
    help="CPU threads for the networks; 0: one per core (with --jobs: the cores shared out).",
)
_jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1, MAX_CPU_THREADS),
    default=None,
    metavar="N",
    help="Code GOPs in N worker processes at once; the same stream and video as one "
    "[default: 1; with --ray, one per CPU of the cluster].",
)
_ray_option = click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS|auto",
    help="Code GOPs as tasks on a Ray cluster (auto: a running one, else a local instance); "
    "needs pip install 'canfvc[ray]'.",
)
PARALLEL_GROUP = ("Parallel", ["jobs", "ray_address", "chunk_source"])


def _echo_summary(title: str, summary: Any) -> None:
    """One line on stderr with the numbers the engine reports."""
    if not isinstance(summary, dict) or not summary:
        return
    parts = [f"{key}={_format_value(value)}" for key, value in summary.items() if _is_scalar(value)]
    click.echo(f"{PROG}: {title}: " + " ".join(parts), err=True)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, Fraction)) or value is None


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _check_stdout(*outputs: str | None) -> None:
    """Binary data on a terminal helps nobody: ask for a pipe or a file instead."""
    if STDIO_NAME in outputs and sys.stdout is None:  # started with stdout closed (>&-)
        raise OutputError("stdout is closed: name an output file instead of -")
    if STDIO_NAME in outputs and sys.stdout.isatty():
        raise UsageError(
            "stdout is a terminal: pipe it into another program or name an output file"
        )


@contextmanager
def _binary_input(path: str) -> Iterator[Any]:
    """A .cvc file, or stdin for ``-``."""
    if path == STDIO_NAME:
        yield sys.stdin.buffer
        return
    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such file")
    if not file.is_file():
        raise InputError(f"{path}: not a regular file")
    with file.open("rb") as handle:
        yield handle


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
    Y4M, or anything ffmpeg can read; output is raw YUV, Y4M, lossless mp4/mkv or PNG.
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
                "preset",
                "motion_lmbda",
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
@_overwrite_option
@click.option(
    "--lambda",
    "lmbda",
    type=float,
    default=DEFAULT_LAMBDA,
    callback=_positive,
    metavar="L",
    help=f"Rate-distortion trade-off: higher is better quality, more bits; the model is trained "
    f"over 256..2048 [default: {DEFAULT_LAMBDA:g}].",
)
@click.option(
    "--motion-lambda",
    "motion_lmbda",
    default=AUTO,
    show_default=True,
    callback=_positive_or_auto,
    metavar="L|auto",
    help="Rate-distortion trade-off of the coded motion; auto: an eighth of --lambda, not below "
    "the model's lowest trained λ (nor above --lambda).",
)
@click.option(
    "--gop",
    type=int,
    default=DEFAULT_GOP,
    show_default=True,
    callback=_at_least(0),
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
@click.option(
    "--intra-coder",
    type=click.Choice(INTRA_CODERS),
    default=DEFAULT_INTRA_CODER,
    show_default=True,
    help="What codes the I-frames: the model's ANFIC network, or HEVC intra (libx265 through "
    "ffmpeg, at a QP set by --lambda; the paper's CANF-VC*). The stream says which: decoding "
    "needs no option, and HEVC I-frames need ffmpeg's HEVC decoder.",
)
@click.option(
    "--motion-search",
    type=click.Choice(MOTION_SEARCHES),
    default=DEFAULT_MOTION_SEARCH,
    show_default=True,
    help="Where the coded motion comes from: OpenCV's DIS optical flow, or the model's SPyNet. "
    "Encoder only: any stream decodes the same way.",
)
@click.option(
    "--preset",
    type=click.Choice(tuple(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="Encoding time against bits, as x265's --preset: slow, slower and veryslow refine what "
    "the coders send (--refine), saving from 6-8 % (slow, 2-4 times the encoding time) to 10 % "
    "(veryslow, 9 times) of the bits at equal PSNR-RGB. Encoder only: any preset decodes in the "
    "same time.",
)
@click.option(
    "--refine",
    type=click.IntRange(0, MAX_REFINE_STEPS),
    default=None,
    metavar="N",
    help="Refine what each coder sends with N gradient steps on rate + λ·distortion (slower "
    "encoding; docs/encoder.md has its measured effect) [default: the preset's; medium: 0, off].",
)
@click.option(
    "--refine-inter",
    type=click.IntRange(0, MAX_REFINE_STEPS),
    default=None,
    metavar="M",
    help="Refinement steps in P-frames (motion and inter coders) [default: --refine's N, else "
    "the preset's]. --refine 12 --refine-inter 0 refines only the I-frames, which gain the most "
    "per step.",
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    metavar="M",
    help="Model name (lite, full) or path to a weights file.",
)
@_device_option
@_threads_option
@_jobs_option
@_ray_option
@click.option(
    "--chunk-source",
    type=click.Choice(CHUNK_SOURCES),
    default=FRAMES_SOURCE,
    show_default=True,
    help="How workers get their GOPs: frames sent from this process (the input read once), or "
    "the input's path, which each worker reads (a file every Ray node can open).",
)
@_input_options(with_range=True)
@_quiet_option
def encode(
    input_path: str,
    output: str,
    recon: str | None,
    csv_path: str | None,
    overwrite: bool,
    lmbda: float,
    motion_lmbda: float | None,
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
) -> None:
    """Compress INPUT into the bitstream OUT.cvc."""
    _check_stdout(output, recon)
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
    parallel = ray_address is not None or (jobs or 1) > 1
    if chunk_source == PATH_SOURCE and input_path == STDIO_NAME:
        raise UsageError("--chunk-source path: workers cannot read stdin; name an input file")
    reader_options = _reader_options(size, fps, bit_depth, matrix, full_range)
    with open_reader(input_path, start=start, frames=frames, **reader_options) as reader:
        encode_options, encode_video, set_cpu_threads = _import_engine(
            "canfvc_codec.codec", "EncodeOptions", "encode_video", "set_cpu_threads"
        )
        set_cpu_threads(threads)
        refine, refine_inter = refine_steps(preset, refine, refine_inter)
        options = encode_options(
            lmbda=lmbda,
            motion_lmbda=motion_lmbda,
            gop=gop,
            adaptive_intra=adaptive_intra,
            intra_choice=intra_choice,
            intra_coder=intra_coder,
            motion_search=motion_search,
            refine=refine,
            refine_inter=refine_inter,
            model=model,
            device=device,
        )
        with open_sink(output, overwrite) as sink:
            recon_writer = open_writer(recon, reader.info, overwrite=overwrite) if recon else None
            with recon_writer or nullcontext():
                if parallel:
                    (encode_parallel, input_source) = _import_engine(
                        "canfvc_codec.parallel", "encode_parallel", "InputSource"
                    )
                    source = None
                    if chunk_source == PATH_SOURCE:
                        path = str(Path(input_path).resolve())
                        source = input_source(path, reader_options, start, frames)
                    summary = encode_parallel(
                        reader,
                        sink,
                        options,
                        jobs=jobs,
                        threads=threads,
                        ray_address=ray_address,
                        source=source,
                        recon=recon_writer,
                        progress=not quiet,
                    )
                else:
                    summary = encode_video(
                        reader, sink, options, recon=recon_writer, progress=not quiet
                    )
    if csv_path is not None:
        _write_frame_csv(csv_path, summary["per_frame"], overwrite)
    if not quiet:
        _echo_summary("encoded", summary)


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
        ("Output", ["output", "overwrite"]),
        ("Decoding", ["start", "frames", "device", "threads", "model"]),
        PARALLEL_GROUP,
        GENERAL_GROUP,
    ],
    short_help="Decode a .cvc bitstream into a video.",
    epilog="""\b
The output format follows OUT's extension: .yuv (raw 4:2:0), .y4m, .mp4 or
.mkv (lossless H.264), a PNG pattern such as rec_%04d.png, or - for Y4M on
stdout. Size, rate, bit depth and colour come from the bitstream.

\b
Examples:
  canfvc decode clip.cvc -o rec.yuv
  canfvc decode clip.cvc -o rec_%04d.png
  canfvc decode clip.cvc -o - | ffmpeg -i - -c:v libx265 -crf 20 rec.mp4
  cat clip.cvc | canfvc decode - -o - | ffplay -""",
)
@click.argument("input_path", metavar="IN.cvc")
@click.option("-o", "--output", required=True, metavar="OUT", help="Video to write (- for stdout).")
@_overwrite_option
@_range_options(
    "Write from frame K on (decoding starts at the I-frame at or before it).",
    "Write at most N frames",
)
@_device_option
@_threads_option
@_jobs_option
@_ray_option
@click.option(
    "--model",
    metavar="M",
    help="Model name or weights file [default: the one the bitstream names].",
)
@_quiet_option
def decode(
    input_path: str,
    output: str,
    overwrite: bool,
    start: int,
    frames: int | None,
    device: str,
    threads: int,
    jobs: int | None,
    ray_address: str | None,
    model: str | None,
    quiet: bool,
) -> None:
    """Decode the bitstream IN.cvc (- for stdin) into the video OUT."""
    _check_stdout(output)
    check_video_output(output, overwrite)
    with _binary_input(input_path) as source:
        decode_video, set_cpu_threads = _import_engine(
            "canfvc_codec.codec", "decode_video", "set_cpu_threads"
        )
        set_cpu_threads(threads)
        writers: list[VideoWriter] = []

        def open_output(info: VideoInfo) -> VideoWriter:
            writer = open_writer(output, info, overwrite=overwrite)
            writers.append(writer)
            return writer

        options: dict[str, Any] = {}
        if ray_address is not None or (jobs or 1) > 1:
            (decode_video,) = _import_engine("canfvc_codec.parallel", "decode_parallel")
            options = {"jobs": jobs, "threads": threads, "ray_address": ray_address}
        try:
            summary = decode_video(
                source,
                open_output,
                device=device,
                model=model,
                progress=not quiet,
                start=start,
                frames=frames,
                **options,
            )
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for writer in writers:
            writer.close()
    if not quiet:
        _echo_summary("decoded", summary)


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
@_input_options(with_range=False)
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
        (model_report,) = _import_engine("canfvc_codec.networks.complexity", "model_report")
        report = model_report(model_name)
    elif file is None:
        raise UsageError("missing FILE (or --model NAME); see 'canfvc info -h'")
    elif _is_bitstream(file):
        with _binary_input(file) as source:
            (describe,) = _import_engine("canfvc_codec.bitstream", "describe")
            report = describe(source)
    else:
        options = _reader_options(size, fps, bit_depth, matrix, full_range)
        with open_reader(file, **options) as reader:
            report = _video_report(file, reader.format_name, reader.info)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=_json_default))
    else:
        _echo_report(report)


def _is_bitstream(path: str) -> bool:
    """A .cvc name, or the container's magic at the start of the file or of stdin."""
    if path == STDIO_NAME:
        if sys.stdin.isatty():
            raise InputError("stdin: nothing piped in")
        return sys.stdin.buffer.peek(len(CVC_MAGIC))[: len(CVC_MAGIC)] == CVC_MAGIC
    file = Path(path)
    if file.suffix.lower() == CVC_SUFFIX:
        return True
    if not file.is_file():
        return False  # the video readers say what is wrong with it
    with file.open("rb") as handle:
        return handle.read(len(CVC_MAGIC)) == CVC_MAGIC


def _video_report(path: str, format_name: str, video: VideoInfo) -> dict[str, Any]:
    return {
        "file": path,
        "format": format_name,
        "width": video.width,
        "height": video.height,
        "fps": str(video.fps),
        "bit_depth": video.bit_depth,
        "pixel_format": "yuv420p" if video.bit_depth == 8 else "yuv420p10le",
        "matrix": video.matrix,
        "range": "full" if video.full_range else "limited",
        "frames": video.frame_count if video.frame_count is not None else "unknown",
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return str(value)


def _echo_report(report: dict[str, Any], indent: int = 0) -> None:
    """A report as aligned ``key: value`` lines; nested dicts indent, lists of dicts as tables."""
    pad = " " * indent
    width = max((len(str(key)) for key in report), default=0)
    for key, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:")
            _echo_report(value, indent + 2)
        elif isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
            click.echo(f"{pad}{key}:")
            _echo_table(value, indent + 2)
        elif isinstance(value, list):
            click.echo(
                f"{pad}{key + ':':<{width + 1}} {', '.join(_format_value(v) for v in value)}"
            )
        else:
            click.echo(f"{pad}{key + ':':<{width + 1}} {_format_value(value)}")


def _echo_table(rows: list[dict[str, Any]], indent: int) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_format_cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    pad = " " * indent
    click.echo(pad + "  ".join(column.rjust(w) for column, w in zip(columns, widths, strict=True)))
    for line in cells:
        click.echo(pad + "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def _format_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_format_value(v) for v in value)
    return _format_value(value)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn user errors into ``canfvc: message`` and an exit code."""
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
        interrupted = isinstance(err.__cause__, KeyboardInterrupt)
        sys.exit(EXIT_INTERRUPTED if interrupted else 1)
    except KeyboardInterrupt:
        click.echo(file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        click.echo(f"{PROG}: terminated", err=True)
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:
        silence_stdout()
        click.echo(f"{PROG}: output pipe closed (broken pipe)", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
