"""Find the learner's own line in a traceback (a notebook cell), not a line inside a library."""

from __future__ import annotations

import os
import sysconfig
import traceback
from types import TracebackType

import torch

import clipcourse

__all__ = ["learner_frame", "not_written_name"]


def _library_roots() -> tuple[str, ...]:
    roots = {os.path.dirname(os.path.abspath(clipcourse.__file__)), os.path.dirname(os.path.abspath(torch.__file__))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.abspath(path))
    return tuple(sorted(roots))


_ROOTS = _library_roots()


def _is_library(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    path = os.path.abspath(filename)
    return any(path == root or path.startswith(root + os.sep) for root in _ROOTS)


def learner_frame(tb: TracebackType | None) -> traceback.FrameSummary | None:
    """The innermost frame of ``tb`` that is the learner's code (a notebook cell or their own file)."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    for frame in reversed(frames):
        if not _is_library(frame.filename):
            return frame
    return frames[-1] if frames else None


def not_written_name(exc: BaseException | None, tb: TracebackType | None) -> str | None:
    """The function name when ``exc`` is an untouched stub's ``NotImplementedError``, else None.

    A stub raises it on a line of the learner's own code; a ``NotImplementedError``
    from torch (an operation a device lacks, a meta tensor) is an ordinary error.
    """
    if not isinstance(exc, NotImplementedError):
        return None
    frames = traceback.extract_tb(tb) if tb is not None else []
    if not frames or _is_library(frames[-1].filename):
        return None
    if "raise NotImplementedError" not in (frames[-1].line or "") and str(exc):
        return None
    name = frames[-1].name
    return "this cell" if name == "<module>" else name
