"""The ``teleconsult`` command line.

Each command group lives in its own module and adds itself to the parser through
``register(subparsers)``; a command's handler takes the parsed arguments and returns
the process exit status.

Commands are registered lazily: ``teleconsult token ...`` imports the module of
``token`` and no other, so commands that process no signal (``token``, ``setup``,
``audit``, ``backup``, ``restore``, ``--version``) never pay for numpy, scipy and numba,
which the ECG commands import. ``--help`` (and an unknown command) registers them all,
to list them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from teleconsult import __version__

Handler = Callable[[argparse.Namespace], int]
# What a command creates is its user's alone (folders 0700, files 0600): the data dir
# holds patients' ECGs and ids, recordings, the database and the keys, and many of its
# writers (the WFDB record files among them) open files with the default mode.
PRIVATE_UMASK: Final = 0o077
if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[Any]


def _server(commands: Commands) -> None:
    from teleconsult import server_cmd

    server_cmd.register(commands)


def _ecg(commands: Commands) -> None:
    from teleconsult import ecg_cmd

    ecg_cmd.register(commands)


def _device(commands: Commands) -> None:
    from teleconsult import device_cmd

    device_cmd.register(commands)


def _recording(commands: Commands) -> None:
    from teleconsult import recording_cmd

    recording_cmd.register(commands)


def _audit(commands: Commands) -> None:
    from teleconsult import audit_cmd

    audit_cmd.register(commands)


def _backup(commands: Commands) -> None:
    from teleconsult import backup_cmd

    backup_cmd.register(commands)


def _keys(commands: Commands) -> None:
    from teleconsult import keys_cmd

    keys_cmd.register(commands)


def _report(commands: Commands) -> None:
    from teleconsult import opinion_report_cmd

    opinion_report_cmd.register(commands)


def _loadtest(commands: Commands) -> None:
    from teleconsult import loadtest_cmd

    loadtest_cmd.register(commands)


def _setup(commands: Commands) -> None:
    from teleconsult import setup_cmd

    setup_cmd.register(commands)


# Command name -> the registrar of its module (one module may register several names).
REGISTRARS: dict[str, Callable[[Commands], None]] = {
    "serve": _server,
    "token": _server,
    "setup": _setup,
    "ecg": _ecg,
    "device": _device,
    "recording": _recording,
    "audit": _audit,
    "backup": _backup,
    "restore": _backup,
    "keys": _keys,
    "report": _report,
    "loadtest": _loadtest,
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the command of ``argv`` registered (every command without one)."""
    parser = argparse.ArgumentParser(
        prog="teleconsult",
        description="Telemedicine for county medical alliances: consult rooms, remote ECG, "
        "accounts and institutions, a tamper-evident audit trail.",
    )
    parser.add_argument("--version", action="version", version=f"teleconsult {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    words = list(sys.argv[1:] if argv is None else argv)
    wanted = _command_of(words)
    if wanted in REGISTRARS:
        REGISTRARS[wanted](commands)
    elif not (wanted is None and "--version" in words):
        for registrar in dict.fromkeys(REGISTRARS.values()):
            registrar(commands)
    return parser


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run the block under :data:`PRIVATE_UMASK`, restoring the umask after."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        with private_umask():
            return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
