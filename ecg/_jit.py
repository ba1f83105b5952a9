"""The one place where numba is imported: a typed ``jit`` decorator for ecg's kernels.

Design notes
------------
- Kernels are compiled with ``nopython=True`` and ``cache=True``: the machine code is
  kept in ``__pycache__`` beside the module, so a new process (a CLI run, a live worker)
  loads it instead of compiling again. Where that folder cannot be written numba falls
  back to its user cache directory (``NUMBA_CACHE_DIR`` chooses another).
- ``nogil=True``: a kernel releases the GIL, so the server's threads carry on while a
  worker computes.
- ``error_model="numpy"``: division by zero gives inf/NaN as numpy does, rather than
  raising, so a kernel and the numpy code it replaces agree bit for bit.
- **The cache is per file.** numba checks a cached kernel against its own source file
  only: a kernel that calls (and so inlines) a kernel of another file keeps running the
  old code after that file changes, until its own file changes too. So kernels call
  only kernels of their own module; a helper that two modules need is copied, not
  imported (``_detect_kernels.history_median`` and ``_flags_kernels.insertion_median``).
- numba ships no type information: :func:`jit` returns the function with its own type,
  so that mypy checks the callers against the Python signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["jit"]

_F = TypeVar("_F", bound=Callable[..., Any])


def jit(function: _F) -> _F:
    """Compile ``function`` with numba (nopython, cached, GIL released)."""
    compiled = numba.njit(cache=True, nogil=True, error_model="numpy")(function)
    return cast(_F, compiled)
