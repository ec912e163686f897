"""Progress bars that show their final state in the static book.

In Jupyter (and Colab) a lesson gets tqdm's widget bar. While the book builds,
the executed notebooks become static pages where widgets would need scripts
from a CDN, so the bar prints one plain-text line instead: its final state
(steps, time, rate and the last loss shown). The book's Sphinx configuration loads this module
as an extension (``tools/book_extension.py``), which switches the kernels it
starts to text bars.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Set to ``"text"`` to get plain-text bars (the book build sets it for its kernels).
ENV = "CLIPCOURSE_PROGRESS"


def _final_line_tqdm():
    """A text tqdm that prints one line, its final state, when it closes."""
    from tqdm.std import tqdm as text_tqdm

    class FinalLine(text_tqdm):
        _show = False

        def display(self, *args: Any, **kwargs: Any) -> Any:
            # the build keeps every stream message as its own line: only the last one is worth a line
            return super().display(*args, **kwargs) if self._show else None

        def close(self) -> None:
            self._show = True
            super().close()

    return FinalLine


def tqdm(*args: Any, **kwargs: Any):
    """``tqdm.auto.tqdm``, or a one-line text bar on stdout when ``$CLIPCOURSE_PROGRESS`` is ``text``."""
    if os.environ.get(ENV) == "text":
        kwargs.setdefault("file", sys.stdout)
        return _final_line_tqdm()(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(*args, **kwargs)
