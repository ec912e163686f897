"""The :class:`Checks` context manager behind every visible test cell."""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


class CheckFailed(AssertionError):
    """Raised at the end of a check block when any check failed; the message lists the hints."""


def _as_float_list(value: Any) -> tuple[list[float], tuple[int, ...]]:
    """Flatten ``value`` into Python floats plus its shape, without trusting ``torch.allclose``."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu", torch.float64)
    else:
        tensor = torch.as_tensor(value, dtype=torch.float64)
    return [float(x) for x in tensor.reshape(-1).tolist()], tuple(tensor.shape)


def values_close(actual: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and every element within ``atol + rtol * |expected|`` (NaNs never match).

    Pure Python on purpose: a notebook that monkeypatches ``torch.allclose``
    cannot make this comparison pass.
    """
    try:
        a, shape_a = _as_float_list(actual)
        b, shape_b = _as_float_list(expected)
    except (TypeError, ValueError, RuntimeError):
        return False
    if shape_a != shape_b:
        return False
    for x, y in zip(a, b, strict=True):
        if math.isnan(x) or math.isnan(y):
            return False
        if math.isinf(x) or math.isinf(y):
            if x != y:  # inf - inf is nan and |x - inf| <= rtol * inf: compare infinities exactly
                return False
        elif abs(x - y) > atol + rtol * abs(y):
            return False
    return True


def _shape_of(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


class Checks:
    """Collect checks for one function; print one line each; raise at the end if any failed.

    Checks never stop at the first failure, so a learner sees every symptom at
    once. An exception raised inside the block (``NotImplementedError`` from an
    untouched stub, a ``RuntimeError`` from a shape mismatch) becomes a failed
    check with the error and a hint.
    """

    def __init__(self, name: str, *, quiet: bool = False) -> None:
        self.name = name
        self.quiet = quiet
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    # -- recording ----------------------------------------------------------------
    def _record(self, ok: bool, what: str, hint: str | None) -> bool:
        if ok:
            self.passed.append(what)
            if not self.quiet:
                print(f"[pass] {self.name}: {what}")
        else:
            hint = hint or "compare your function with the formula in the text above"
            self.failed.append((what, hint))
            print(f"[FAIL] {self.name}: {what}\n       hint: {hint}")
        return ok

    def check(self, condition: Any, what: str, hint: str | None = None) -> bool:
        """A plain condition; ``what`` says what was expected."""
        try:
            ok = bool(condition)
        except Exception as exc:  # a tensor with several values, say
            return self._record(False, what, f"could not read the condition as True/False ({exc})")
        return self._record(ok, what, hint)

    def type(self, value: Any, expected: type | tuple[type, ...], hint: str | None = None) -> bool:
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        return self._record(
            isinstance(value, expected),
            f"returns a {names}",
            hint or f"your function returned a {type(value).__name__}",
        )

    def shape(self, value: Any, expected: Sequence[int], hint: str | None = None) -> bool:
        expected = tuple(expected)
        actual = _shape_of(value)
        what = f"shape is {expected}"
        if actual == expected:
            return self._record(True, what, hint)
        got = "no shape (not a tensor?)" if actual is None else f"shape {actual}"
        return self._record(False, what, f"got {got}. " + (hint or "check which dimensions you reduce or transpose"))

    def scalar(self, value: Any, hint: str | None = None) -> bool:
        """A 0-dimensional tensor (a loss), not a Python float or a vector."""
        ok = isinstance(value, torch.Tensor) and value.dim() == 0
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        return self._record(
            ok,
            "returns a scalar tensor",
            f"got {got}. " + (hint or "reduce with .mean() and keep it a tensor (no .item()) so it can be backpropagated"),
        )

    def finite(self, value: Any, hint: str | None = None) -> bool:
        try:
            values, _ = _as_float_list(value)
            ok = all(math.isfinite(v) for v in values)
        except (TypeError, ValueError, RuntimeError):
            ok = False
        return self._record(ok, "values are finite", hint or "NaN or inf: a division by zero, or exp() of a large number?")

    def close(
        self,
        actual: Any,
        expected: Any,
        what: str = "values match the reference",
        hint: str | None = None,
        *,
        atol: float = 1e-5,
        rtol: float = 1e-4,
        mistakes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Compare with a reference; ``mistakes`` maps a hint to the output a known mistake gives.

        When the learner's output matches a known wrong output, that hint is
        shown instead of the generic one: "what is probably wrong".
        """
        if values_close(actual, expected, atol=atol, rtol=rtol):
            return self._record(True, what, hint)
        for mistake_hint, wrong in (mistakes or {}).items():
            if values_close(actual, wrong, atol=atol, rtol=rtol):
                return self._record(False, what, mistake_hint)
        got, want = _shape_of(actual), _shape_of(expected)
        if got is not None and want is not None and got != want:
            hint = f"shape {got} but expected {want}. " + (hint or "")
        return self._record(False, what, hint)

    def raises(
        self,
        exception: type[BaseException] | tuple[type[BaseException], ...],
        func: Callable[..., Any],
        *args: Any,
        what: str,
        hint: str | None = None,
        **kwargs: Any,
    ) -> bool:
        """``func(*args, **kwargs)`` must raise ``exception`` (bad input gets a clear error)."""
        try:
            func(*args, **kwargs)
        except exception:
            return self._record(True, what, hint)
        except Exception as exc:
            return self._record(False, what, f"raised {type(exc).__name__}: {exc}. " + (hint or ""))
        return self._record(False, what, hint or "no error was raised")

    # -- context manager ----------------------------------------------------------
    def __enter__(self) -> Checks:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            if issubclass(exc_type, NotImplementedError):
                hint = "replace `raise NotImplementedError()` with your implementation"
            elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
                return False
            else:
                where = traceback.extract_tb(tb)[-1]
                hint = f"{exc_type.__name__} at line {where.lineno}: {exc}"
            self._record(False, "runs without raising an error", hint)
        grading = sys.modules.get("clipcourse.grading")
        if grading is not None:
            changed = grading.tampered()
            if changed:
                self._record(False, "the grader's tools are intact", "remove the code that replaces " + ", ".join(changed))
        total = len(self.passed) + len(self.failed)
        if self.failed:
            lines = "\n".join(f"  - {what}: {hint}" for what, hint in self.failed)
            raise CheckFailed(f"{self.name}: {len(self.failed)} of {total} checks failed\n{lines}") from exc
        print(f"{self.name}: all {total} checks passed")
        return False
