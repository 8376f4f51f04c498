"""How the command line prints what the library returns: summaries and reports as text."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import click

from canfvc_codec.io import VideoInfo

PROG = "canfvc"


def echo_summary(title: str, summary: Any) -> None:
    """One line on stderr with the numbers the engine reports."""
    if not isinstance(summary, dict) or not summary:
        return
    parts = [f"{key}={format_value(value)}" for key, value in summary.items() if _is_scalar(value)]
    click.echo(f"{PROG}: {title}: " + " ".join(parts), err=True)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, Fraction)) or value is None


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def video_report(path: str, format_name: str, video: VideoInfo) -> dict[str, Any]:
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


def json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return str(value)


def echo_report(report: dict[str, Any], indent: int = 0) -> None:
    """A report as aligned ``key: value`` lines; nested dicts indent, lists of dicts as tables."""
    pad = " " * indent
    width = max((len(str(key)) for key in report), default=0)
    for key, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:")
            echo_report(value, indent + 2)
        elif isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
            click.echo(f"{pad}{key}:")
            _echo_table(value, indent + 2)
        elif isinstance(value, list):
            click.echo(f"{pad}{key + ':':<{width + 1}} {', '.join(format_value(v) for v in value)}")
        else:
            click.echo(f"{pad}{key + ':':<{width + 1}} {format_value(value)}")


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
        return "/".join(format_value(v) for v in value)
    return format_value(value)
