"""``teleconsult serve`` and ``teleconsult token``."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    del commands
