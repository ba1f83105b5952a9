"""``ecg.warmup``: after it, a process has every kernel of ``ecg`` compiled or loaded."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter (this one's kernels may have been reached by other tests): warm
# up, then list every kernel of the ecg._*_kernels modules that Python code of ecg
# calls (its name followed by "(" in a public module's source) and that has no
# compiled signature. A kernel called only by other kernels is compiled into them and
# has no signature of its own.
_SCRIPT = """
import importlib, pkgutil, re
from pathlib import Path
import numba.core.registry
import ecg
from ecg.warmup import warm_up
warm_up()
folder = Path(ecg.__path__[0])
python = "".join(p.read_text() for p in folder.glob("[a-z]*.py"))
for info in pkgutil.iter_modules(ecg.__path__):
    if not (info.name.startswith("_") and info.name.endswith("_kernels")):
        continue
    module = importlib.import_module(f"ecg.{info.name}")
    for name in module.__all__:
        kernel = getattr(module, name)
        called = re.search(rf"\\b{name}\\(", python) is not None
        if isinstance(kernel, numba.core.registry.CPUDispatcher) and called:
            if not kernel.signatures:
                print(f"{info.name}.{name}")
"""


def test_warm_up_reaches_every_public_kernel() -> None:
    """No kernel is left for the first real stream or record to compile or load (a
    worker's first stream would wait for it while its viewers wait for beats)."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == []
