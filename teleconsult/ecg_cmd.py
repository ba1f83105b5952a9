"""``teleconsult ecg ...``: annotate recorded ECGs and benchmark the detector.

Each subcommand lives in its own module and registers itself on the ``ecg`` group.
"""

from __future__ import annotations

import argparse
from typing import Any

from teleconsult import annotate_cmd, bench_cmd, report_cmd, streams_cmd


def register(commands: argparse._SubParsersAction[Any]) -> None:
    ecg = commands.add_parser("ecg", help="annotate and benchmark ECG records")
    sub = ecg.add_subparsers(dest="ecg_command", metavar="COMMAND", required=True)
    annotate_cmd.register(sub)
    bench_cmd.register(sub)
    streams_cmd.register(sub)
    report_cmd.register(sub)
