"""The browser assets (no build step), shipped as package data.

:data:`WEB_DIR` is the folder they are in, in a source checkout and in an installed
package alike (setuptools copies them beside this file: ``[tool.setuptools.package-data]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

WEB_DIR: Final = Path(__file__).resolve().parent
