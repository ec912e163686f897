"""Learner self-checks: one printed line per check and a hint naming the likely mistake.

Used by the visible test cells of every exercise notebook. Works anywhere
(Colab included), with or without nbgrader: a failed check raises
:class:`CheckFailed` so nbgrader scores the cell zero.

>>> import torch
>>> with Checks("double") as check:              # doctest: +NORMALIZE_WHITESPACE
...     out = torch.tensor([2.0, 4.0])
...     _ = check.shape(out, (2,))
...     _ = check.close(out, torch.tensor([2.0, 4.0]))
[pass] double: shape is (2,)
[pass] double: values match the reference (tolerance 1e-05 + 0.0001 x |expected|)
double: all 2 checks passed

A failed comparison states the largest difference and, unless a catalogued
mistake matches, what differs (:func:`describe_difference`); a required check
that fails (type, shape, scalar, finite) skips the checks that build on it; an
untouched stub prints one line saying it is not written yet.
"""

from __future__ import annotations

from clipcourse.checks.core import CheckFailed, Checks, values_close
from clipcourse.checks.diagnose import describe_difference

__all__ = ["CheckFailed", "Checks", "describe_difference", "values_close"]
