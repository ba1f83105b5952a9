"""``teleconsult ecg ...``: annotate recorded ECGs and benchmark the detector."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    ecg = commands.add_parser("ecg", help="annotate and benchmark ECG records")
    sub = ecg.add_subparsers(dest="ecg_command", metavar="COMMAND", required=True)
    del sub
