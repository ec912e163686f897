"""The mistake catalogue: plausible wrong answers, each with the hint it must trigger."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    function: str  #: the graded function (its answer cell's grade_id)
    name: str  #: short identifier, unique per function
    code: str  #: the full source of the wrong answer cell
    hint: str  #: a substring of the hint the checks print for it


def catalogue(assignment: str) -> list[Mistake]:
    """The mistakes of one assignment (``"ch01"`` -> ``autograder/mistakes/ch01.py``)."""
    return list(importlib.import_module(f"autograder.mistakes.{assignment}").MISTAKES)
