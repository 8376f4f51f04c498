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


def main(argv: list[str] | None = None) -> None:
    try:
        train_command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except CanfvcError as err:
        click.echo(f"canfvc: {err}", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
