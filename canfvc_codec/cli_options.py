"""The command line's option types and the option blocks that several commands share.

Torch-free, so that ``canfvc -h`` and the option checks run without loading the networks. Each
encoder choice (preset, refinement, intra coder) is declared once here and used by ``canfvc
encode`` and ``canfvc eval`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import click

from canfvc_codec.defaults import (
    DEFAULT_DEVICE,
    DEFAULT_NUMERIC_PATH,
    DEVICES,
    NUMERIC_PATH_ENV,
)
from canfvc_codec.encoder.presets import DEFAULT_PRESET, MAX_REFINE_STEPS, PRESETS
from canfvc_codec.hevc import DEFAULT_INTRA_CODER, INTRA_CODERS
from canfvc_codec.io import parse_fps, parse_size
from canfvc_codec.io.frame import MATRICES
from canfvc_codec.parallel_options import CHUNK_SOURCES, FRAMES_SOURCE
from canfvc_codec.threads import MAX_CPU_THREADS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
AUTO = "auto"
HELP = "help"  # key of the help option in the option groups
HELP_COLUMN_MAX = 30

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


def at_least(minimum: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that rejects integers below ``minimum``."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value < minimum:
            raise click.BadParameter(f"must be {minimum} or more, not {value}")
        return value

    return check


def positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option callback that accepts finite numbers above 0 (``inf`` and ``nan`` are not)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, not {value:g}")
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be more than 0, not {value:g}")
    return value


def positive_or_auto(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """A positive number, or None for ``auto`` (the encoder's own choice)."""
    if value == AUTO:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"must be a number or {AUTO!r}, not {value!r}") from None
    return positive(ctx, param, number)


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


def range_options(
    start_help: str, frames_help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--start K and --frames N: the part of a video a command works on."""
    options = [
        click.option(
            "--start",
            type=int,
            default=0,
            callback=at_least(0),
            metavar="K",
            help=start_help,
        ),
        click.option(
            "--frames",
            type=int,
            callback=at_least(1),
            metavar="N",
            help=f"{frames_help} [default: all].",
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def input_options(with_range: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
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
            func = range_options("Skip the first K frames.", "Code at most N frames")(func)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def reader_options(
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

overwrite_option = click.option(
    "-y", "--overwrite", is_flag=True, help="Replace output files that already exist."
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr."
)
device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEFAULT_DEVICE,
    show_default=True,
    help="Where the networks run (auto: cuda when available).",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(0, MAX_CPU_THREADS),
    default=0,
    show_default=True,
    metavar="N",
    help="CPU threads for the networks; 0: one per free core (the cores less the load average; "
    "with --jobs: the cores shared out).",
)


def _stack(*options: Decorator) -> Decorator:
    """Several options as one decorator, listed in the help in the order given."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# ----------------------------------------------------------------------------- parallel coding

# GOPs (encode) or runs from an I-frame (decode) coded by worker processes or Ray actors
# (canfvc_codec.parallel); the same stream and video as one process.
PARALLEL_GROUP = ("Parallel", ["jobs", "ray_address", "chunk_source"])
parallel_options = _stack(
    click.option(
        "--jobs",
        type=click.IntRange(1, MAX_CPU_THREADS),
        default=None,
        metavar="N",
        help="Code GOPs in N worker processes at once; the same stream and video as one "
        "[default: 1; with --ray, one per CPU of the cluster].",
    ),
    click.option(
        "--ray",
        "ray_address",
        metavar="ADDRESS|auto",
        help="Code GOPs as tasks on a Ray cluster (auto: a running one, else a local instance); "
        "needs pip install 'canfvc[ray]'.",
    ),
)
chunk_source_option = click.option(
    "--chunk-source",
    type=click.Choice(CHUNK_SOURCES),
    default=FRAMES_SOURCE,
    show_default=True,
    help="How workers get their GOPs: frames sent from this process (the input read once), or "
    "the input's path, which each worker reads (a file every Ray node can open).",
)


# The numerical path of the networks (canfvc_codec.numerics): a development option, hidden from
# the help, by which the determinism tests make one machine compute as another would.
numeric_path_option = click.option(
    "--numeric-path",
    default=DEFAULT_NUMERIC_PATH,
    envvar=NUMERIC_PATH_ENV,
    hidden=True,
    callback=lambda ctx, param, value: value or DEFAULT_NUMERIC_PATH,
    help="How the networks compute on a CPU (docs/determinism.md).",
)


# ----------------------------------------------------------------------------- encoder choices

# What `canfvc encode` passes to the encoder and `canfvc eval` passes on to `canfvc encode`.
preset_options = _stack(
    click.option(
        "--preset",
        type=click.Choice(tuple(PRESETS)),
        default=DEFAULT_PRESET,
        show_default=True,
        help="Encoding time against bits, as x265's --preset: slow, slower and veryslow refine "
        "what the coders send (--refine), saving from 6-8 % (slow, 2-4 times the encoding time) "
        "to 10 % (veryslow, 9 times) of the bits at equal PSNR-RGB. Encoder only: any preset "
        "decodes in the same time.",
    ),
    click.option(
        "--refine",
        type=click.IntRange(0, MAX_REFINE_STEPS),
        default=None,
        metavar="N",
        help="Refine what each coder sends with N gradient steps on rate + λ·distortion (slower "
        "encoding; docs/encoder.md has its measured effect) [default: the preset's; medium: 0, "
        "off].",
    ),
    click.option(
        "--refine-inter",
        type=click.IntRange(0, MAX_REFINE_STEPS),
        default=None,
        metavar="M",
        help="Refinement steps in P-frames (motion and inter coders) [default: --refine's N, "
        "else the preset's]. --refine 12 --refine-inter 0 refines only the I-frames, which gain "
        "the most per step.",
    ),
)
intra_coder_option = click.option(
    "--intra-coder",
    type=click.Choice(INTRA_CODERS),
    default=DEFAULT_INTRA_CODER,
    show_default=True,
    help="What codes the I-frames: the model's ANFIC network, or HEVC intra (libx265 through "
    "ffmpeg, at a QP set by --lambda; the paper's CANF-VC*). The stream says which: decoding "
    "needs no option, and HEVC I-frames need ffmpeg's HEVC decoder.",
)
