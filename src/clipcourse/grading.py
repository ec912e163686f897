"""Helpers for hidden tests: trusted comparisons and a guard against tampering.

nbgrader runs a learner's code and the tests in one Python process, so an
answer cell can monkeypatch anything the tests use (``torch.allclose``, the
course's check helpers, the reference implementations). Importing this module
in a notebook's locked set-up cell, before any learner code runs, snapshots
those objects; :func:`assert_untampered` (called by every hidden test and by
:class:`~clipcourse.checks.Checks`) fails the cell if any of them changed.
This is a tripwire, not a sandbox: the grade command also flags submissions
that reach into the grader (``autograder/course.py``).
"""

from __future__ import annotations

import inspect
import math
import sys
import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

import clipcourse.checks.core as _checks_core
from clipcourse.checks.core import CheckFailed, _as_float_list, values_close
from clipcourse.checks.diagnose import tolerance_text
from clipcourse.device import seed_everything

__all__ = [
    "GraderTampered",
    "assert_untampered",
    "expect",
    "expect_close",
    "plain_tensor",
    "protect",
    "seed_everything",
]


class GraderTampered(AssertionError):
    """A function the tests rely on was replaced by code in the notebook."""


#: ``(id(owner), name) -> (owner, name, original object, label for messages)``
_SNAPSHOT: dict[tuple[int, str], tuple[object, str, object, str]] = {}


def _static(owner: object, name: str) -> object:
    # getattr_static: `Class.method` of a classmethod is a new bound object at every access
    return inspect.getattr_static(owner, name, None)


def _remember(owner: object, name: str, label: str) -> None:
    _SNAPSHOT[(id(owner), name)] = (owner, name, _static(owner, name), label)


def _public_callables(module: types.ModuleType) -> Iterable[tuple[object, str, str]]:
    for name, value in vars(module).items():
        if name.startswith("__") or not callable(value):
            continue
        yield module, name, f"{module.__name__}.{name}"
        if isinstance(value, type) and value.__module__ == module.__name__:
            for attr, member in vars(value).items():
                if callable(member) or isinstance(member, (staticmethod, classmethod, property)):
                    yield value, attr, f"{module.__name__}.{name}.{attr}"


def protect(*modules: types.ModuleType) -> None:
    """Snapshot every public function and class method of ``modules`` (the references tests use)."""
    for module in modules:
        for owner, name, label in _public_callables(module):
            _remember(owner, name, label)


def _snapshot_defaults() -> None:
    for owner, names, prefix in (
        (torch, ("allclose", "isclose", "equal", "as_tensor", "tensor", "is_tensor"), "torch."),
        (torch.Tensor, ("allclose", "isclose", "equal", "tolist", "__eq__", "__float__", "item"), "torch.Tensor."),
        (torch.testing, ("assert_close",), "torch.testing."),
        (np, ("allclose", "isclose", "array_equal"), "numpy."),
        (np.testing, ("assert_allclose",), "numpy.testing."),
        (math, ("isclose", "isnan", "isfinite"), "math."),
    ):
        for name in names:
            _remember(owner, name, prefix + name)
    protect(_checks_core)
    for name in ("assert_untampered", "expect", "expect_close", "expect_loss_contract", "plain_tensor", "values_close"):
        _remember(sys.modules[__name__], name, f"clipcourse.grading.{name}")


def tampered() -> list[str]:
    """Names of snapshotted objects that no longer are what they were at import."""
    changed = []
    for owner, name, original, label in _SNAPSHOT.values():
        if _static(owner, name) is not original:
            changed.append(label)
    return sorted(changed)


def assert_untampered() -> None:
    """Fail when the notebook replaced a function the grader relies on."""
    changed = tampered()
    if changed:
        raise GraderTampered(
            "code in this notebook replaced functions the tests rely on: "
            + ", ".join(changed)
            + ". Remove the lines that assign to them; the tests cannot be trusted otherwise."
        )


def plain_tensor(value: Any, what: str = "your result") -> torch.Tensor:
    """A detached copy of ``value`` if it is exactly a ``torch.Tensor`` (no subclass, no lookalike)."""
    if type(value) is not torch.Tensor:
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    return value.detach().clone()


def expect(condition: bool, message: str) -> None:
    """Like ``assert`` but never stripped by ``python -O`` and never a learner's object."""
    assert_untampered()
    if not bool(condition):
        raise CheckFailed(message)


def expect_close(
    actual: Any, expected: Any, what: str, *, atol: float = 1e-5, rtol: float = 1e-4
) -> None:
    """Trusted comparison for hidden tests; the message names what differed and by how much."""
    assert_untampered()
    if values_close(actual, expected, atol=atol, rtol=rtol):
        return
    try:
        a, shape_a = _as_float_list(actual)
        b, shape_b = _as_float_list(expected)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckFailed(f"{what}: could not compare ({exc})") from None
    if shape_a != shape_b:
        raise CheckFailed(f"{what}: shape {shape_a}, expected {shape_b}")
    worst = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
    raise CheckFailed(
        f"{what}: differs from the reference (largest difference {worst:.3g}, {tolerance_text(atol, rtol)})"
    )


def expect_loss_contract(
    loss: Any,
    reference: Any,
    inputs: Iterable[torch.Tensor],
    names: Iterable[str],
    what: str,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """What a loss is for, beyond its value: float64 in gives float64 out, and gradients reach its inputs.

    ``loss(*inputs)`` and ``reference(*inputs)`` are called on float64 copies that
    require gradients; the learner's result must be a float64 ``torch.Tensor`` on the
    autograd graph, and its gradient with respect to each input (named by ``names``,
    in order) must match the reference's (so a ``.detach()`` on one input, or on one
    direction of a symmetric loss, loses points, and an input the reference ignores
    must get no gradient either).
    """
    assert_untampered()
    names = list(names)
    mine = [t.detach().double().clone().requires_grad_(True) for t in inputs]
    theirs = [t.detach().clone().requires_grad_(True) for t in mine]
    out = loss(*mine)
    if type(out) is not torch.Tensor:
        raise CheckFailed(f"{what}: the loss should be a torch.Tensor, got {type(out).__name__}")
    expect(
        out.dtype == torch.float64,
        f"{what}: float64 inputs must give a float64 loss, got {out.dtype}; keep the inputs' dtype "
        "(no .float(), no float32 tensors created inside)",
    )
    expect(
        out.requires_grad,
        f"{what}: the loss must stay on the autograd graph (no .item(), .detach(), .data or NumPy)",
    )
    want = reference(*theirs)
    grads = torch.autograd.grad(out, mine, allow_unused=True)
    wanted = torch.autograd.grad(want, theirs, allow_unused=True)
    for name, got, ref in zip(names, grads, wanted, strict=True):
        if ref is None or not bool(ref.abs().sum() > 0):
            expect(
                got is None or not bool(got.abs().sum() > 0),
                f"{what}: {name} should get no gradient from this loss",
            )
            continue
        expect(
            got is not None,
            f"{what}: no gradient reaches {name}: keep it on the autograd graph (no .detach(), .data or .item())",
        )
        expect_close(got.detach(), ref, f"{what}: the gradient with respect to {name}", atol=atol, rtol=rtol)


_snapshot_defaults()
