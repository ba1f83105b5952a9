"""The ``teleconsult`` command line.

Each command group lives in its own module and adds itself to the parser through
``register(subparsers)``; a command's handler takes the parsed arguments and returns
the process exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from teleconsult import (
    __version__,
    audit_cmd,
    backup_cmd,
    device_cmd,
    ecg_cmd,
    recording_cmd,
    server_cmd,
    setup_cmd,
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teleconsult",
        description="Real-time telemedicine: consult rooms and live annotated ECG.",
    )
    parser.add_argument("--version", action="version", version=f"teleconsult {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    server_cmd.register(commands)
    ecg_cmd.register(commands)
    device_cmd.register(commands)
    recording_cmd.register(commands)
    audit_cmd.register(commands)
    backup_cmd.register(commands)
    setup_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
