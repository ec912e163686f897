"""The mistake catalogue: plausible wrong answers, each with the hint it must trigger."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


def answers(function: str, args: str) -> Callable[[str, str, str], Mistake]:
    """A maker of ``function``'s mistakes: ``make(name, hint, body)`` wraps ``body`` in ``def function(args):``.

    >>> make = answers("double", "x")
    >>> print(make("adds", "multiply, do not add", "return x + 2").code)
    def double(x):
        return x + 2
    <BLANKLINE>
    """

    def make(name: str, hint: str, body: str) -> Mistake:
        lines = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
        return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")

    return make
