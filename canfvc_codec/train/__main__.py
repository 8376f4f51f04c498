"""``python -m canfvc_codec.train``: the trainer without the rest of the command line.

It does not go through ``canfvc_codec.cli`` so that a machine that only trains needs neither the
video I/O stack nor the range coder.
"""

from __future__ import annotations

import sys

import click

from canfvc_codec.errors import CanfvcError
from canfvc_codec.train.command import train_command

PROG = "canfvc train"
EXIT_INTERRUPTED = 130


def main(
    argv: list[str] | None = None, command: click.Command = train_command, prog: str = PROG
) -> None:
    """Run ``command`` (the trainer's, or a lab harness built on it) on ``argv``; errors are
    one line and an exit status."""
    try:
        command.main(args=argv, prog_name=prog, standalone_mode=False)
    except CanfvcError as err:
        click.echo(f"canfvc: {_rank_prefix()}{err}", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(EXIT_INTERRUPTED)


def _rank_prefix() -> str:
    """Under torchrun every rank reports its own errors: those of the other ranks say whose."""
    from canfvc_codec.train.distributed import world_from_environment

    try:
        world = world_from_environment()
    except CanfvcError:
        return ""
    return f"rank {world.rank}: " if world.rank else ""


if __name__ == "__main__":
    main()
