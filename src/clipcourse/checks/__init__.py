"""Learner self-checks: one printed line per check and a hint naming the likely mistake.

Used by the visible test cells of every exercise notebook. Works anywhere
(Colab included), with or without nbgrader: a failed check raises
:class:`CheckFailed` so nbgrader scores the cell zero.

>>> import torch
>>> with Checks("double") as check:              # doctest: +NORMALIZE_WHITESPACE
...     out = torch.tensor([2.0, 4.0])
...     check.shape(out, (2,))
...     check.close(out, torch.tensor([2.0, 4.0]))
[pass] double: shape is (2,)
[pass] double: values match the reference
double: all 2 checks passed
"""

from __future__ import annotations

from clipcourse.checks.core import CheckFailed, Checks, values_close

__all__ = ["CheckFailed", "Checks", "values_close"]
