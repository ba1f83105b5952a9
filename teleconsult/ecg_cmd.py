"""``teleconsult ecg ...``: annotate recorded ECGs and benchmark the detector.

Each subcommand lives in its own module and registers itself on the ``ecg`` group.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    ecg = commands.add_parser("ecg", help="annotate and benchmark ECG records")
    sub = ecg.add_subparsers(dest="ecg_command", metavar="COMMAND", required=True)
    for module in _subcommand_modules():
        module.register(sub)


def _subcommand_modules() -> list[Any]:
    # Imported lazily so that `teleconsult serve` does not pay for scipy and wfdb.
    import importlib

    names = ["teleconsult.annotate_cmd", "teleconsult.bench_cmd"]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    return modules
