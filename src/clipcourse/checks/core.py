"""The :class:`Checks` context manager behind every visible test cell."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from clipcourse.checks.diagnose import describe_difference, largest_difference, tolerance_text
from clipcourse.checks.learner import learner_frame, not_written_name


class CheckFailed(AssertionError):
    """Raised at the end of a check block when any check failed; the message lists the hints."""

    def _render_traceback_(self) -> list[str]:
        # IPython/Jupyter show this instead of a traceback: the lines that matter were printed
        # above, and the frames would be the check machinery's (and, for hidden tests, their code)
        return [f"CheckFailed: {self}"]


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


_MAIN = "values match the reference"
_NOTHING = object()  # "no value": a check that is not about one value


class Checks:
    """Collect checks for one function; print one line each; raise at the end if any failed.

    Independent checks never stop at the first failure, so a learner sees every
    symptom at once; but one failure does not cascade. When a value fails its
    type, shape, scalar or finite check, the later checks of that same value
    print one ``[skip]`` line each with the reason; a check given
    ``required=True`` (say, "runs without error") skips every later check of
    the block. An exception raised inside the block becomes one failed check
    that names the learner's own line (or, after a failure, one ``[skip]``
    line); ``NotImplementedError`` from an untouched stub prints one line
    saying the function is not written yet, and nothing else.
    """

    def __init__(self, name: str, *, quiet: bool = False) -> None:
        self.name = name
        self.quiet = quiet
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.blocker: str | None = None  # the first failed check that every later check needs
        self._failed_values: list[tuple[Any, str, tuple[int, ...] | None]] = []  # (value, what failed, shape wanted)

    # -- recording ----------------------------------------------------------------
    def _skip_reason(self, value: Any, compared_with: Any = _NOTHING) -> str | None:
        """Why a check of ``value`` is skipped, or None.

        A value that failed a shape check is still compared with a reference of
        its actual shape (``compared_with``): the same tensor can be returned twice.
        """
        if self.blocker is not None:
            return self.blocker
        for failed, what, wanted_shape in self._failed_values:
            if value is failed:
                if wanted_shape is not None and compared_with is not _NOTHING:
                    if _shape_of(compared_with) != wanted_shape:
                        continue
                return what
        return None

    def _record(
        self,
        ok: bool,
        what: str,
        hint: str | None,
        required: bool | None = False,
        value: Any = _NOTHING,
        detail: str = "",
        shape: tuple[int, ...] | None = None,
        compared_with: Any = _NOTHING,
    ) -> bool:
        """Print and remember one result; ``required=None`` gates later checks of ``value`` only."""
        reason = self._skip_reason(value, compared_with)
        if reason is not None:
            self.skipped.append((what, reason))
            print(f"[skip] {self.name}: {what} (needs: {reason})")
            return False
        label = f"{what} ({detail})" if detail else what
        if ok:
            self.passed.append(label)
            if not self.quiet:
                print(f"[pass] {self.name}: {label}")
            return True
        hint = hint or "compare your function with the formula in the text above"
        self.failed.append((label, hint))
        print(f"[FAIL] {self.name}: {label}\n       hint: {hint}")
        if required:
            self.blocker = what
        elif required is None and value is not _NOTHING:
            self._failed_values.append((value, what, shape))
        return False

    def check(self, condition: Any, what: str, hint: str | None = None, *, required: bool = False) -> bool:
        """A plain condition; ``what`` says what was expected.

        ``required=True``: the later checks of the block depend on this one and are skipped if it fails.
        """
        try:
            ok = bool(condition)
        except Exception as exc:  # a tensor with several values, say
            return self._record(False, what, f"could not read the condition as True/False ({exc})", required)
        return self._record(ok, what, hint, required)

    def type(
        self, value: Any, expected: type | tuple[type, ...], hint: str | None = None, *, required: bool | None = None
    ) -> bool:
        """``value`` is an instance of ``expected``; later checks of the same value are skipped if not."""
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        got = f"your function returned a {type(value).__name__}"
        return self._record(
            isinstance(value, expected), f"returns a {names}", f"{got}. {hint}" if hint else got, required, value
        )

    def shape(
        self, value: Any, expected: Sequence[int], hint: str | None = None, *, required: bool | None = None
    ) -> bool:
        """``value.shape == expected``; the hint names each dimension that differs.

        ``required``: None (default) skips later checks of the same value when
        this fails; True skips every later check of the block; False none.
        """
        expected = tuple(expected)
        actual = _shape_of(value)
        what = f"shape is {expected}"
        if actual == expected:
            return self._record(True, what, hint, required, value)
        if actual is None:
            got = f"got a {type(value).__name__}, which has no shape"
        elif len(actual) != len(expected):
            plural = "s" if len(actual) != 1 else ""
            got = f"got shape {actual}: {len(actual)} dimension{plural} instead of {len(expected)}"
        else:
            sizes = [f"dimension {i} is {a} instead of {e}" for i, (a, e) in enumerate(zip(actual, expected)) if a != e]
            got = f"got shape {actual}: " + ", ".join(sizes)
        hint = f"{got}. " + (hint or "check which dimensions you reduce or transpose")
        return self._record(False, what, hint, required, value, shape=expected)

    def scalar(self, value: Any, hint: str | None = None, *, required: bool | None = None) -> bool:
        """A 0-dimensional tensor (a loss), not a Python float or a vector."""
        ok = isinstance(value, torch.Tensor) and value.dim() == 0
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        return self._record(
            ok,
            "returns a scalar tensor",
            f"got {got}. " + (hint or "reduce with .mean() and keep it a tensor (no .item()) so it can be backpropagated"),
            required,
            value,
        )

    def finite(self, value: Any, hint: str | None = None, *, required: bool | None = None) -> bool:
        try:
            values, _ = _as_float_list(value)
            bad = sum(not math.isfinite(v) for v in values)
            ok = bad == 0
            found = f"{bad} of {len(values)} values are NaN or inf" if bad else ""
        except (TypeError, ValueError, RuntimeError):
            ok, found = False, f"a {type(value).__name__} is not numbers"
        return self._record(
            ok, "values are finite",
            f"{found}. " + (hint or "a division by zero, or exp() of a large number?"), required, value,
        )  # fmt: skip

    def close(
        self,
        actual: Any,
        expected: Any,
        what: str = _MAIN,
        hint: str | None = None,
        *,
        atol: float = 1e-5,
        rtol: float = 1e-4,
        mistakes: Mapping[str, Any] | None = None,
        required: bool = False,
    ) -> bool:
        """Compare with a reference; ``mistakes`` maps a hint to the output a known mistake gives.

        The line states the tolerance, and on failure the largest difference.
        When the learner's output matches a known wrong output, that mistake's
        hint is shown. Otherwise the hint says what differs, measured on the two
        values (a transpose, a constant factor, which rows differ, a property
        the reference has and the result lacks) rather than repeating the
        recipe. ``hint`` follows the measured difference only for a property
        check (one given its own ``what``), where it is about that property;
        the main comparison's hint (the recipe) is shown only when nothing
        measurable was found.
        """
        tolerance = tolerance_text(atol, rtol)
        ok = values_close(actual, expected, atol=atol, rtol=rtol)
        wrongs = () if ok else (mistakes or {}).items()
        matched = next((h for h, wrong in wrongs if values_close(actual, wrong, atol=atol, rtol=rtol)), None)
        if self._skip_reason(actual, expected) is not None and (matched is None or self.blocker is not None):
            return self._record(False, what, hint, required, actual, compared_with=expected)
        if ok:
            return self._record(True, what, hint, required, actual, tolerance, compared_with=expected)
        worst = largest_difference(actual, expected)
        detail = f"largest difference {worst[0]:.3g}, {tolerance}" if worst else tolerance
        if matched is not None:  # a catalogued mistake: its hint, even after a failed shape check of this value
            return self._record(False, what, matched, required, _NOTHING, detail)
        try:
            measured = describe_difference(actual, expected, atol=atol, rtol=rtol)
        except Exception:  # noqa: BLE001 - a diagnosis must never hide the failure itself
            measured = ""
        if measured and hint and what != _MAIN:
            measured = f"{measured}. {hint}"
        return self._record(False, what, measured or hint, required, actual, detail, compared_with=expected)

    def raises(
        self,
        exception: type[BaseException] | tuple[type[BaseException], ...],
        func: Callable[..., Any],
        *args: Any,
        what: str,
        hint: str | None = None,
        required: bool = False,
        **kwargs: Any,
    ) -> bool:
        """``func(*args, **kwargs)`` must raise ``exception`` (bad input gets a clear error)."""
        if self.blocker is not None:
            return self._record(False, what, hint)
        try:
            func(*args, **kwargs)
        except NotImplementedError:
            raise  # an unwritten stub: the block says so once (see __exit__)
        except exception:
            return self._record(True, what, hint, required)
        except Exception as exc:
            return self._record(False, what, f"raised {type(exc).__name__}: {exc}. " + (hint or ""), required)
        return self._record(False, what, hint or "no error was raised", required)

    # -- context manager ----------------------------------------------------------
    def __enter__(self) -> Checks:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            return False
        if exc_type is not None and issubclass(exc_type, CheckFailed):
            return False  # a nested block already reported
        stub = not_written_name(exc, tb) if exc is not None else None
        if stub is not None:
            message = (f"{stub} is not written yet: replace `raise NotImplementedError()` in it with your code, "
                       "run that cell, then run this one again")  # fmt: skip
            print(f"[TODO] {self.name}: {message}")
            raise CheckFailed(f"{self.name}: {message}") from None
        if exc_type is not None:
            if self.failed:  # most likely a consequence of the failure above: say so, in one line
                what = "the remaining checks"
                reason = self.blocker or self.failed[0][0]
                self.skipped.append((what, reason))
                print(f"[skip] {self.name}: {what} (needs: {reason}; they stopped at {_describe_error(exc, tb)})")
            else:
                self._record(False, "runs without raising an error", _describe_error(exc, tb))
        grading = sys.modules.get("clipcourse.grading")
        if grading is not None:
            changed = grading.tampered()
            if changed:
                self.blocker = None
                self._record(False, "the grader's tools are intact", "remove the code that replaces " + ", ".join(changed))
        total = len(self.passed) + len(self.failed)
        if self.failed:
            lines = "\n".join(f"  - {what}: {hint}" for what, hint in self.failed)
            skipped = f" ({len(self.skipped)} skipped)" if self.skipped else ""
            raise CheckFailed(f"{self.name}: {len(self.failed)} of {total} checks failed{skipped}\n{lines}") from exc
        print(f"{self.name}: all {total} checks passed")
        return False


def _describe_error(exc: BaseException, tb: Any) -> str:
    """``TypeError in cosine_similarity_matrix, line 4: `return a @ b.T`: message`` (the learner's own line)."""
    frame = learner_frame(tb)
    if frame is None:
        return f"{type(exc).__name__}: {exc}"
    where = "this cell" if frame.name == "<module>" else frame.name
    source = f": `{frame.line.strip()}`" if frame.line else ""
    return f"{type(exc).__name__} in {where}, line {frame.lineno}{source}: {exc}"
